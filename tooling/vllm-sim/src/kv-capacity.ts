import { readFileSync } from "node:fs";
import { join } from "node:path";
import * as z from "zod";

const GIB = 1024 ** 3;
const MIB = 1024 ** 2;
const BLOCK = 16;

/**
 * The simulated vLLM's KV-cache capacity in tokens, by the arithmetic of the predictive memory
 * model (packages/spica-evaluator/src/predictive/memory-model.ts, V1 accounting). It is repeated
 * here rather than imported: spica-evaluator's tests depend on this package, and a dependency
 * back would make a cycle in the workspace graph. The formula, for a dense model:
 *
 *   requested   = util × CUDA total (memory.total − memory.reserved)
 *   activation  = max(9.75 × max_num_seqs × vocab × 4, max_num_batched_tokens × (3 × intermediate + 3 × hidden) × dtype bytes)
 *   kv bytes    = requested − weights − activation − 0.13 GiB non-torch − 0.3 GiB CUDA graphs (≥ 0.21, unless eager)
 *   kv tokens   = ⌊kv bytes / (16 × 2 × layers × kv heads × head dim × kv dtype bytes)⌋ × 16
 *
 * with vLLM's batch defaults (1024 sequences and 8192 batched tokens on a card of 70 GiB or more
 * that is not an A100, else 256 and 2048). A higher util holds more tokens.
 */
export interface KvCapacityInput {
  cudaTotalMib: number;
  gpuName: string;
  util: number;
  /** a model folder with config.json (and model.safetensors.index.json for the weights' size) */
  modelDir: string;
  version: string;
  enforceEager?: boolean;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  kvCacheDtype?: string;
}

const configSchema = z.looseObject({
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  hidden_size: z.number().int().positive(),
  head_dim: z.number().int().positive().nullish(),
  intermediate_size: z.number().int().positive().optional(),
  vocab_size: z.number().int().positive(),
  torch_dtype: z.string().optional(),
});
const indexSchema = z.looseObject({ metadata: z.looseObject({ total_size: z.number().positive() }) });

function readJson<T>(path: string, schema: z.ZodType<T>): T | null {
  try {
    const parsed = schema.safeParse(JSON.parse(readFileSync(path, "utf8")));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}

/** The KV capacity in tokens, or null when the folder has no config.json this can read. */
export function kvCacheTokensFor(input: KvCapacityInput): number | null {
  const config = readJson(join(input.modelDir, "config.json"), configSchema);
  if (!config) return null;
  const dtypeBytes = /float32/.test(config.torch_dtype ?? "") ? 4 : 2;
  const headDim = config.head_dim ?? config.hidden_size / config.num_attention_heads;
  const kvHeads = config.num_key_value_heads ?? config.num_attention_heads;
  const intermediate = config.intermediate_size ?? 4 * config.hidden_size;
  const weights =
    readJson(join(input.modelDir, "model.safetensors.index.json"), indexSchema)?.metadata.total_size ??
    // No index: the parameters of a dense decoder times the dtype, as the memory model estimates them.
    (config.num_hidden_layers * (4 * config.hidden_size ** 2 + 3 * config.hidden_size * intermediate) +
      2 * config.vocab_size * config.hidden_size) *
      dtypeBytes;
  const total = input.cudaTotalMib * MIB;
  const big = total >= 70 * GIB && !/a100/i.test(input.gpuName);
  const seqs = input.maxNumSeqs ?? (big ? 1024 : 256);
  const batched = input.maxNumBatchedTokens ?? (big ? 8192 : 2048);
  const activation = Math.max(9.75 * seqs * config.vocab_size * 4, batched * (3 * intermediate + 3 * config.hidden_size) * dtypeBytes);
  const graphsInBudget = input.enforceEager || !atLeast(input.version, 0, 21) ? 0 : 0.3 * GIB;
  const kv = Math.ceil(input.util * total) - weights - activation - 0.13 * GIB - graphsInBudget;
  const kvDtypeBytes = input.kvCacheDtype?.startsWith("fp8") ? 1 : dtypeBytes;
  const perToken = 2 * config.num_hidden_layers * kvHeads * headDim * kvDtypeBytes;
  return kv > 0 ? Math.floor(kv / (BLOCK * perToken)) * BLOCK : 0;
}

function atLeast(version: string, major: number, minor: number): boolean {
  const match = /^(\d+)\.(\d+)/.exec(version);
  if (!match) return true;
  const [a, b] = [Number(match[1]), Number(match[2])];
  return a !== major ? a > major : b >= minor;
}
