import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { type Config, splitArguments } from "@gpu-canary/config";
import { errnoCode } from "@gpu-canary/errors";
import { cudaTotalMib } from "@gpu-canary/gpu-probe";
import { StateUnreadableError } from "@gpu-canary/state-file";
import { readVllmConfig } from "@gpu-canary/vllm-control";
import * as z from "zod";
import type { RunContext } from "./context.ts";
import { ModelFolderError } from "./predictive/model-config.ts";
import { readVllmSeen } from "./predictive/vllm-seen.ts";

/**
 * What a canary ran on (docs/architecture.md, "Promotions"): a promotion's evidence holds only
 * on a host that still looks like this. Stored in the promotion's JSON, hence snake_case. A part
 * that could not be known is null, and null is never compared: unknown is not a difference.
 */
export const fingerprintSchema = z.object({
  vllm_version: z.string().nullable(),
  gpu_name: z.string().nullable(),
  /** what CUDA can use of the production GPU: nvidia-smi's total less its reserved memory */
  gpu_total_mib: z.number().nullable(),
  /** sha256 of the model folder's config.json, byte for byte */
  model_config_sha256: z.string().nullable(),
  /** the Whisper size the host runs (KLR_WHISPER_SIZE) */
  whisper_size: z.string(),
  kv_cache_dtype: z.string().nullable(),
  /**
   * The flags that size vLLM's memory beside the candidate's utilization, as production has them (its
   * --config file's max-model-len and the like; KLR_MAX_MODEL_LEN and the like, which the canary is
   * given too): a flag changed since the canary makes its evidence about another vLLM. Keys as vLLM
   * spells them. The utilization itself is the candidate's, and an apply changes production's.
   */
  tuned_flags: z.record(z.string(), z.string()),
});
export type Fingerprint = z.infer<typeof fingerprintSchema>;

/** The flags of KLR_VLLM_EXTRA_ARGS that size the KV cache or the batch, kept by name. */
const EXTRA_FLAGS = ["--kv-cache-memory-bytes", "--kv-cache-memory", "--max-model-len", "--max-num-seqs", "--max-num-batched-tokens"];

/** KLR_VLLM_VERSION, else production's /version, else the version last seen; null when none is known. */
async function vllmVersion(ctx: RunContext): Promise<string | null> {
  // The setting wins, as in the pre-flight: it is what the memory model used for this host.
  if (ctx.config.vllmVersion) return ctx.config.vllmVersion;
  try {
    return await ctx.production.version(2000);
  } catch {
    // Production may be down: the last version seen still describes the host.
  }
  // An unreadable vllm_seen.json throws (it names itself): it is never read as "no version".
  return (await readVllmSeen(ctx.layout.vllmSeen))?.version ?? null;
}

async function productionGpu(ctx: RunContext): Promise<{ name: string | null; totalMib: number | null }> {
  try {
    const { gpus } = await ctx.probe.queryGpus();
    const gpu = gpus.find((g) => g.index === ctx.config.productionGpuId);
    if (!gpu) return { name: null, totalMib: null };
    return { name: gpu.name || null, totalMib: cudaTotalMib(gpu) };
  } catch {
    // No nvidia-smi (or it failed): the GPU is not known, which is not a difference.
    return { name: null, totalMib: null };
  }
}

/** sha256 of the model's config.json; null when it is absent, an error naming it when it cannot be read. */
async function modelConfigDigest(modelPath: string): Promise<string | null> {
  const path = join(modelPath, "config.json");
  let bytes: Buffer;
  try {
    // Followed through links: Hugging Face's cache links snapshots to blobs.
    bytes = await readFile(path);
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw new ModelFolderError(path, `cannot be read (${code ?? String(error)})`);
  }
  return createHash("sha256").update(bytes).digest("hex");
}

/** The value of `--flag value` or `--flag=value` in argv, null when absent. */
function flagValue(argv: readonly string[], flag: string): string | null {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === flag) return argv[i + 1] ?? "";
    if (arg.startsWith(`${flag}=`)) return arg.slice(flag.length + 1);
  }
  return null;
}

async function tunedFlags(config: Config): Promise<Record<string, string>> {
  const flags: Record<string, string> = {};
  if (config.vllmConfigFile) {
    try {
      const file = await readVllmConfig(config.vllmConfigFile);
      for (const flag of EXTRA_FLAGS) {
        const value = file.values[flag.slice(2)];
        if (value !== undefined) flags[flag === "--kv-cache-memory" ? "kv-cache-memory-bytes" : flag.slice(2)] = value;
      }
    } catch (error) {
      // A file that is not there yet is a missing piece; one that is there but unreadable fails closed.
      if (!(error instanceof StateUnreadableError && error.reason === "does not exist")) throw error;
    }
  }
  if (config.maxModelLen !== undefined) flags["max-model-len"] = String(config.maxModelLen);
  if (config.maxNumSeqs !== undefined) flags["max-num-seqs"] = String(config.maxNumSeqs);
  if (config.maxNumBatchedTokens !== undefined) flags["max-num-batched-tokens"] = String(config.maxNumBatchedTokens);
  const split = config.vllmExtraArgs ? splitArguments(config.vllmExtraArgs) : null;
  if (split?.ok) {
    for (const flag of EXTRA_FLAGS) {
      const value = flagValue(split.value, flag);
      // vLLM's log suggests --kv-cache-memory; its CLI knows --kv-cache-memory-bytes: one key for both.
      if (value !== null) flags[flag === "--kv-cache-memory" ? "kv-cache-memory-bytes" : flag.slice(2)] = value;
    }
  }
  return flags;
}

/** The host as a run sees it now. Never throws for a piece it cannot know; throws for state that is there but unreadable. */
export async function hostFingerprint(ctx: RunContext): Promise<Fingerprint> {
  const [version, gpu, digest, flags] = await Promise.all([
    vllmVersion(ctx),
    productionGpu(ctx),
    modelConfigDigest(ctx.config.modelPath),
    tunedFlags(ctx.config),
  ]);
  return {
    vllm_version: version,
    gpu_name: gpu.name,
    gpu_total_mib: gpu.totalMib,
    model_config_sha256: digest,
    whisper_size: ctx.config.whisperSize,
    kv_cache_dtype: ctx.config.kvCacheDtype,
    tuned_flags: flags,
  };
}

const short = (sha: string) => (sha.length > 12 ? `${sha.slice(0, 12)}…` : sha);

/**
 * What differs between the host a canary ran on and the host now, one plain sentence each
 * ("vLLM version 0.11.0 → 0.12.0"); empty when nothing known differs. A field null on either
 * side is not compared. A tuned flag set on one side only differs ("unset" on the other): vLLM's
 * default then sizes the memory instead.
 */
export function fingerprintDifferences(then: Fingerprint, now: Fingerprint): string[] {
  const out: string[] = [];
  const compare = <T extends string | number>(what: string, a: T | null, b: T | null, show: (v: T) => string = String) => {
    if (a !== null && b !== null && a !== b) out.push(`${what} ${show(a)} → ${show(b)}`);
  };
  compare("vLLM version", then.vllm_version, now.vllm_version);
  compare("GPU", then.gpu_name, now.gpu_name);
  compare("GPU memory (CUDA total)", then.gpu_total_mib, now.gpu_total_mib, (v) => `${v} MiB`);
  compare("model config.json sha256", then.model_config_sha256, now.model_config_sha256, short);
  compare("Whisper size", then.whisper_size, now.whisper_size);
  compare("KV cache dtype", then.kv_cache_dtype, now.kv_cache_dtype);
  const keys = [...new Set([...Object.keys(then.tuned_flags), ...Object.keys(now.tuned_flags)])].sort();
  for (const key of keys) {
    const a = then.tuned_flags[key] ?? "unset";
    const b = now.tuned_flags[key] ?? "unset";
    if (a !== b) out.push(`--${key} ${a} → ${b}`);
  }
  return out;
}
