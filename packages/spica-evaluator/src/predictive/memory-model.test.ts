import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { predictMemory, type MemoryInputs } from "./memory-model.ts";
import { estimateParams, kvBytesPerToken } from "./model-config.ts";
import { llama31_8b, qwen25_7b, mistral7b, qwen25_05b, qwen25_15b, deepseekV2Lite } from "./test-fixtures/model-shapes.ts";
import { accountingFor } from "./vllm-accounting.ts";
import { WHISPER_FP16_GIB, whisperBytes } from "./whisper-footprint.ts";

const GIB = 1024 ** 3;

describe("model shapes", () => {
  it.each([
    ["Llama-3.1-8B", llama31_8b, 8_030_261_248, 131_072],
    ["Qwen2.5-7B", qwen25_7b, 7_615_616_512, 57_344],
    ["Mistral-7B-v0.3", mistral7b, 7_248_023_552, 131_072],
    ["Qwen2.5-0.5B (tied)", qwen25_05b, 494_032_768, 12_288],
    ["Qwen2.5-1.5B (tied)", qwen25_15b, 1_543_714_304, 28_672],
  ] as const)("%s has the published parameter count and KV bytes per token", (_name, shape, params, bpt) => {
    // Qwen2 adds q/k/v biases the dense formula leaves out: within 0.05%.
    expect(Math.abs(estimateParams(shape) - params) / params).toBeLessThan(0.0005);
    expect(kvBytesPerToken(shape, 2)).toBe(bpt);
    expect(kvBytesPerToken(shape, 1)).toBe(bpt / 2);
  });

  it("sizes an MLA model's KV by its latent, not by heads", () => {
    expect(kvBytesPerToken(deepseekV2Lite, 2)).toBe(31_104);
  });
});

const base = (over: Partial<MemoryInputs> = {}): MemoryInputs => ({
  totalBytes: 23.55 * GIB,
  othersBytes: 0,
  whisperBytes: WHISPER_FP16_GIB.small * GIB,
  gpuName: "NVIDIA GeForce RTX 4090",
  util: 0.75,
  accounting: accountingFor("0.10.1"),
  shape: qwen25_7b,
  weightsBytes: 14.19 * GIB,
  maxModelLen: 8192,
  kvCacheDtype: "auto",
  ...over,
});

describe("predictMemory", () => {
  it("reproduces the worked example: Qwen2.5-7B at 0.75 on a 24 GB card beside Whisper small fits", () => {
    // predictive-memory.md §6: requested 17.66, A 1.41, KV 1.93 GiB = 36.1K tokens, 4.4× at 8k.
    const p = predictMemory(base());
    expect(p.requestedBytes / GIB).toBeCloseTo(17.66, 2);
    expect(p.activationBytes / GIB).toBeCloseTo(1.41, 2);
    expect(p.kvCacheBytes / GIB).toBeCloseTo(1.93, 2);
    expect(Math.round(p.kvTokens / 100) / 10).toBe(36.1);
    expect(p.maxConcurrency).toBeCloseTo(4.4, 1);
    expect(p.ok).toBe(true);
  });

  it("predicts vLLM's refusal to start with Whisper large at 0.90 (v0.9.1+)", () => {
    const p = predictMemory(base({ util: 0.9, whisperBytes: WHISPER_FP16_GIB.large * GIB }));
    const check = p.checks.find((c) => c.name === "startup_free_memory");
    expect(check?.ok).toBe(false);
    expect(check?.detail).toContain("21.20 GiB");
    expect(check?.detail).toContain("18.26 GiB free");
  });

  it("reproduces a published V0 log: Qwen2.5-7B (5.20 GiB quantized) on an 8 GiB RTX 4060 at 0.70 leaves no KV cache", () => {
    // vllm-project/vllm#13882: "total_gpu_memory (8.00GiB) x gpu_memory_utilization (0.70) = 5.60GiB; model weights take
    // 5.20GiB; non_torch_memory takes 0.03GiB; PyTorch activation peak memory takes 1.42GiB; … KV Cache is -1.05GiB"
    const p = predictMemory(
      base({
        totalBytes: 8 * GIB,
        util: 0.7,
        weightsBytes: 5.2 * GIB,
        accounting: accountingFor("0.7.3"),
        whisperBytes: 0,
        maxModelLen: 4096,
      }),
    );
    expect(Math.abs(p.activationBytes / GIB - 1.42)).toBeLessThan(0.05);
    expect(Math.abs(p.kvCacheBytes / GIB - -1.05)).toBeLessThan(0.5);
    expect(p.checks.find((c) => c.name === "kv_cache_positive")?.ok).toBe(false);
    expect(p.ok).toBe(false);
  });

  it("uses vLLM's batch defaults for big and small GPUs", () => {
    expect(predictMemory(base({ totalBytes: 139.8 * GIB, gpuName: "NVIDIA H200" }))).toMatchObject({
      maxNumSeqs: 1024,
      maxNumBatchedTokens: 8192,
    });
    expect(predictMemory(base({ totalBytes: 79.2 * GIB, gpuName: "NVIDIA A100-SXM4-80GB" }))).toMatchObject({
      maxNumSeqs: 256,
      maxNumBatchedTokens: 2048,
    });
  });

  it("halves KV bytes with an fp8 cache and charges co-tenants to KV on V1 0.8.x", () => {
    const fp8 = predictMemory(base({ kvCacheDtype: "fp8" }));
    expect(fp8.kvTokens).toBeGreaterThan(predictMemory(base()).kvTokens * 1.9);
    const v08 = predictMemory(base({ accounting: accountingFor("0.8.5") }));
    expect(v08.kvCacheBytes).toBeLessThan(predictMemory(base()).kvCacheBytes - WHISPER_FP16_GIB.small * GIB);
  });

  it("never turns a pass into a fail with more memory, and a higher util never asks for less", () => {
    fc.assert(
      fc.property(fc.double({ min: 0.3, max: 0.95, noNaN: true }), fc.double({ min: 0, max: 40, noNaN: true }), (util, extraGib) => {
        const small = predictMemory(base({ util }));
        const big = predictMemory(base({ util, totalBytes: (23.55 + extraGib) * GIB }));
        if (small.ok) expect(big.ok).toBe(true);
        expect(predictMemory(base({ util: Math.min(1, util + 0.01) })).requestedBytes).toBeGreaterThanOrEqual(small.requestedBytes);
      }),
      { numRuns: 500 },
    );
  });
});

describe("accountingFor", () => {
  it("branches on vLLM's memory semantics by version", () => {
    expect(accountingFor("0.6.3")).toMatchObject({ startupCheck: false, othersChargedToKv: false, v1: false });
    expect(accountingFor("0.6.4")).toMatchObject({ othersChargedToKv: true });
    expect(accountingFor("0.8.4")).toMatchObject({ othersChargedToKv: true, v1: true, startupCheck: false });
    expect(accountingFor("0.9.1")).toMatchObject({ startupCheck: true, othersChargedToKv: false, cudaGraphsInBudget: false });
    expect(accountingFor("0.21.0")).toMatchObject({ cudaGraphsInBudget: true });
    expect(accountingFor(null).note).toContain("newest accounting is assumed");
  });
});

describe("whisperBytes", () => {
  it("prefers the running Whisper's measured footprint, adjusted by the table for another size", () => {
    expect(whisperBytes("small", "small", 1.5 * GIB)).toMatchObject({ bytes: 1.5 * GIB });
    expect(whisperBytes("medium", "small", 1.5 * GIB).bytes / GIB).toBeCloseTo(1.5 + 2.58 - 1.16, 5);
    expect(whisperBytes("tiny", "none", null).bytes / GIB).toBeCloseTo(0.61, 5);
    expect(whisperBytes("none", "small", 2 * GIB).bytes).toBe(0);
  });
});
