import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { readModelShape } from "./model-config.ts";
import { readWeightBytes } from "./weights.ts";

const config = {
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  hidden_size: 64,
  intermediate_size: 128,
  vocab_size: 1000,
  torch_dtype: "bfloat16",
};

/** A safetensors file: 8-byte little-endian header length, the JSON header, then the data. */
function safetensors(tensors: Record<string, number>): Buffer {
  let offset = 0;
  const header: Record<string, unknown> = { __metadata__: { format: "pt" } };
  for (const [name, bytes] of Object.entries(tensors)) {
    header[name] = { dtype: "BF16", shape: [bytes / 2], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, Buffer.alloc(offset)]);
}

describe("reading a model folder", () => {
  it("takes the exact weight bytes from the index, else from the safetensors headers", async () => {
    const dir = await testdir();
    await writeFile(join(dir, "config.json"), JSON.stringify(config));
    const shape = await readModelShape(dir);
    await writeFile(join(dir, "model-00001-of-00002.safetensors"), safetensors({ a: 1000, b: 24 }));
    await writeFile(join(dir, "model-00002-of-00002.safetensors"), safetensors({ c: 2000 }));
    expect(await readWeightBytes(dir, shape)).toEqual({ bytes: 3024, source: "safetensors-headers" });
    await writeFile(
      join(dir, "model.safetensors.index.json"),
      JSON.stringify({ metadata: { total_size: 16_060_522_496 }, weight_map: {} }),
    );
    expect(await readWeightBytes(dir, shape)).toEqual({ bytes: 16_060_522_496, source: "safetensors-index" });
  });

  it("estimates from config.json when there are no weights to read", async () => {
    const dir = await testdir();
    await writeFile(join(dir, "config.json"), JSON.stringify(config));
    const weights = await readWeightBytes(dir, await readModelShape(dir));
    expect(weights.source).toBe("estimate-from-config");
    expect(weights.bytes).toBeGreaterThan(0);
  });

  it("names the file when config.json is missing, broken or incomplete — never a pass", async () => {
    const dir = await testdir();
    await expect(readModelShape(dir)).rejects.toMatchObject({
      code: "MODEL_FOLDER_UNUSABLE",
      message: expect.stringContaining(`${dir}/config.json does not exist`),
    });
    await writeFile(join(dir, "config.json"), "{nope");
    await expect(readModelShape(dir)).rejects.toMatchObject({ message: expect.stringContaining("is not valid JSON") });
    await writeFile(join(dir, "config.json"), JSON.stringify({ hidden_size: 64 }));
    await expect(readModelShape(dir)).rejects.toMatchObject({ message: expect.stringContaining("num_hidden_layers") });
  });

  it("reads a multimodal config's text_config", async () => {
    const dir = await testdir();
    await writeFile(join(dir, "config.json"), JSON.stringify({ architectures: ["X"], text_config: config }));
    expect((await readModelShape(dir)).layers).toBe(2);
  });
});
