import { open, readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { errnoCode } from "@gpu-canary/errors";
import { type ModelShape, ModelFolderError, estimateParams } from "./model-config.ts";

export interface WeightBytes {
  bytes: number;
  /** where the number came from */
  source: "safetensors-index" | "safetensors-headers" | "estimate-from-config";
}

/**
 * The exact weight bytes vLLM loads: `metadata.total_size` of model.safetensors.index.json, else
 * the sum of the tensors in the safetensors headers (8-byte little-endian header length, then JSON
 * with each tensor's data_offsets), else an estimate from config.json. Quantized checkpoints come
 * out right because the bytes are read, not computed.
 */
export async function readWeightBytes(modelPath: string, shape: ModelShape): Promise<WeightBytes> {
  try {
    const index = JSON.parse(await readFile(join(modelPath, "model.safetensors.index.json"), "utf8")) as {
      metadata?: { total_size?: unknown };
    };
    const total = index.metadata?.total_size;
    if (typeof total === "number" && total > 0) return { bytes: total, source: "safetensors-index" };
  } catch (error) {
    if (errnoCode(error) !== "ENOENT" && !(error instanceof SyntaxError)) throw error;
  }
  let files: string[];
  try {
    files = (await readdir(modelPath)).filter((name) => name.endsWith(".safetensors")).sort();
  } catch (error) {
    throw new ModelFolderError(modelPath, `cannot be listed (${errnoCode(error) ?? String(error)})`);
  }
  if (files.length > 0) {
    let bytes = 0;
    for (const file of files) bytes += await tensorBytes(join(modelPath, file));
    return { bytes, source: "safetensors-headers" };
  }
  return { bytes: estimateParams(shape) * shape.dtypeBytes, source: "estimate-from-config" };
}

async function tensorBytes(path: string): Promise<number> {
  const handle = await open(path, "r");
  try {
    const lengthBuffer = Buffer.alloc(8);
    await handle.read(lengthBuffer, 0, 8, 0);
    const length = Number(lengthBuffer.readBigUInt64LE(0));
    if (!Number.isSafeInteger(length) || length <= 0 || length > 100 * 1024 * 1024)
      throw new ModelFolderError(path, "has no readable safetensors header");
    const header = Buffer.alloc(length);
    await handle.read(header, 0, length, 8);
    let json: Record<string, { data_offsets?: [number, number] }>;
    try {
      json = JSON.parse(header.toString("utf8")) as Record<string, { data_offsets?: [number, number] }>;
    } catch {
      throw new ModelFolderError(path, "has a safetensors header that is not JSON");
    }
    let bytes = 0;
    for (const [name, tensor] of Object.entries(json)) {
      if (name === "__metadata__" || !tensor.data_offsets) continue;
      bytes += tensor.data_offsets[1] - tensor.data_offsets[0];
    }
    return bytes;
  } finally {
    await handle.close();
  }
}
