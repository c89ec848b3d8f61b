import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { GpuCanaryError, errnoCode } from "@gpu-canary/errors";
import * as z from "zod";

/** The fields of a Hugging Face config.json that shape vLLM's memory. */
const configSchema = z.looseObject({
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  hidden_size: z.number().int().positive(),
  head_dim: z.number().int().positive().nullish(),
  intermediate_size: z.number().int().positive().optional(),
  vocab_size: z.number().int().positive(),
  torch_dtype: z.string().optional(),
  dtype: z.string().optional(),
  tie_word_embeddings: z.boolean().optional(),
  max_position_embeddings: z.number().int().positive().optional(),
  /** MLA (DeepSeek-V2/V3) */
  kv_lora_rank: z.number().int().positive().nullish(),
  qk_rope_head_dim: z.number().int().positive().nullish(),
});

export interface ModelShape {
  layers: number;
  attentionHeads: number;
  kvHeads: number;
  hiddenSize: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  /** bytes per weight element of the checkpoint's dtype */
  dtypeBytes: number;
  tiedEmbeddings: boolean;
  maxPositionEmbeddings: number | null;
  mla: { kvLoraRank: number; qkRopeHeadDim: number } | null;
}

export class ModelFolderError extends GpuCanaryError {
  constructor(path: string, problem: string) {
    super("MODEL_FOLDER_UNUSABLE", `${path} ${problem}`, {
      kind: "fault",
      hint: "KLR_MODEL_PATH must name the Hugging Face model folder production serves (config.json and *.safetensors)",
      details: { path },
    });
  }
}

const DTYPE_BYTES: Record<string, number> = { float32: 4, float: 4, float16: 2, half: 2, bfloat16: 2, float8_e4m3fn: 1, int8: 1 };

/** Read the memory-relevant shape of a model from its config.json; a missing or odd file is an error naming it. */
export async function readModelShape(modelPath: string): Promise<ModelShape> {
  const path = join(modelPath, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new ModelFolderError(
      path,
      errnoCode(error) === "ENOENT" ? "does not exist" : `cannot be read (${errnoCode(error) ?? String(error)})`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ModelFolderError(path, "is not valid JSON");
  }
  // Multimodal configs nest the language model's fields.
  const inner =
    typeof json === "object" && json !== null && "text_config" in json
      ? { ...(json as Record<string, unknown>), ...(json as { text_config: object }).text_config }
      : json;
  const parsed = configSchema.safeParse(inner);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ModelFolderError(path, `lacks what the memory model needs: ${issue?.path.join(".") ?? "?"} (${issue?.message ?? ""})`);
  }
  return shapeOf(parsed.data);
}

export function shapeOf(config: z.infer<typeof configSchema>): ModelShape {
  const dtype = (config.torch_dtype ?? config.dtype ?? "bfloat16").toLowerCase();
  return {
    layers: config.num_hidden_layers,
    attentionHeads: config.num_attention_heads,
    kvHeads: config.num_key_value_heads ?? config.num_attention_heads,
    hiddenSize: config.hidden_size,
    headDim: config.head_dim ?? Math.floor(config.hidden_size / config.num_attention_heads),
    intermediateSize: config.intermediate_size ?? 4 * config.hidden_size,
    vocabSize: config.vocab_size,
    dtypeBytes: DTYPE_BYTES[dtype] ?? 2,
    tiedEmbeddings: config.tie_word_embeddings ?? false,
    maxPositionEmbeddings: config.max_position_embeddings ?? null,
    mla:
      config.kv_lora_rank && config.qk_rope_head_dim ? { kvLoraRank: config.kv_lora_rank, qkRopeHeadDim: config.qk_rope_head_dim } : null,
  };
}

/** KV-cache bytes per token over all layers (vllm/v1/kv_cache_interface.py page sizes). */
export function kvBytesPerToken(shape: ModelShape, kvDtypeBytes: number): number {
  if (shape.mla) return shape.layers * (shape.mla.kvLoraRank + shape.mla.qkRopeHeadDim) * kvDtypeBytes;
  return 2 * shape.layers * shape.kvHeads * shape.headDim * kvDtypeBytes;
}

/** Parameters of a dense decoder from its shape (used only when no safetensors metadata exists). */
export function estimateParams(shape: ModelShape): number {
  const h = shape.hiddenSize;
  const attention =
    h * shape.attentionHeads * shape.headDim + 2 * h * shape.kvHeads * shape.headDim + shape.attentionHeads * shape.headDim * h;
  const mlp = 3 * h * shape.intermediateSize;
  const norms = 2 * h;
  const embeddings = shape.vocabSize * h * (shape.tiedEmbeddings ? 1 : 2);
  return shape.layers * (attention + mlp + norms) + embeddings + h;
}
