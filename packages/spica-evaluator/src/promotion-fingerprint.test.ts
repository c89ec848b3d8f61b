import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import type { RunContext } from "./context.ts";
import { type Fingerprint, fingerprintDifferences, fingerprintSchema, hostFingerprint } from "./promotion-fingerprint.ts";

const MODEL_CONFIG = '{"num_hidden_layers": 32, "hidden_size": 4096}\n';

/** A run context as far as the fingerprint reads it: settings, paths, production's /version and nvidia-smi. */
async function host(settings: Record<string, string> = {}, over: { version?: () => Promise<string>; gpus?: () => Promise<unknown> } = {}) {
  const home = await testdir();
  const modelPath = join(home, "model");
  await mkdir(modelPath);
  const { config } = requireConfig(loadConfig({ env: { KLR_HOME: home, KLR_MODEL_PATH: modelPath, ...settings }, homeDir: home }));
  const layout = layoutFor(config);
  const ctx = {
    config,
    layout,
    production: { version: over.version ?? (() => Promise.resolve("0.11.0")) },
    probe: {
      queryGpus:
        over.gpus ??
        (() =>
          Promise.resolve({
            gpus: [
              { index: 0, uuid: "GPU-a", name: "NVIDIA H100 80GB HBM3", memoryTotalMib: 81559, memoryReservedMib: 512 },
              { index: 1, uuid: "GPU-b", name: "NVIDIA L4", memoryTotalMib: 23034, memoryReservedMib: 0 },
            ],
            reservedKnown: true,
          })),
    },
  } as unknown as RunContext;
  return { home, modelPath, layout, ctx };
}

const down = () => Promise.reject(new Error("connect ECONNREFUSED"));

describe("hostFingerprint", () => {
  it("is what the run context knows: vLLM's version, the production GPU, config.json's digest, Whisper, KV dtype, tuned flags", async () => {
    const h = await host({
      KLR_WHISPER_SIZE: "medium",
      KLR_KV_CACHE_DTYPE: "fp8",
      KLR_MAX_MODEL_LEN: "8192",
      KLR_VLLM_EXTRA_ARGS: "--enforce-eager --kv-cache-memory=45175492096",
      KLR_PRODUCTION_GPU_ID: "0",
    });
    await writeFile(join(h.modelPath, "config.json"), MODEL_CONFIG);
    const fingerprint = await hostFingerprint(h.ctx);
    expect(fingerprint).toEqual({
      vllm_version: "0.11.0",
      gpu_name: "NVIDIA H100 80GB HBM3",
      // what CUDA can use: total less reserved
      gpu_total_mib: 81559 - 512,
      model_config_sha256: createHash("sha256").update(MODEL_CONFIG).digest("hex"),
      whisper_size: "medium",
      kv_cache_dtype: "fp8",
      // vLLM's suggested --kv-cache-memory is the real --kv-cache-memory-bytes
      tuned_flags: { "max-model-len": "8192", "kv-cache-memory-bytes": "45175492096" },
    });
    expect(fingerprintSchema.parse(fingerprint)).toEqual(fingerprint);
  });

  it("reads what sizes vLLM's memory from its --config file (KLR_VLLM_CONFIG), but not the utilization an apply changes", async () => {
    const home = await testdir();
    const file = join(home, "production.yaml");
    await writeFile(file, "# tuned by gpu-canary\ngpu-memory-utilization: 0.72\nmax_num_seqs: 64\nmodel: /m\n");
    const h = await host({ KLR_VLLM_CONFIG: file });
    expect((await hostFingerprint(h.ctx)).tuned_flags).toEqual({ "max-num-seqs": "64" });
  });

  it("KLR_VLLM_VERSION wins; with production down, the version last seen; else null", async () => {
    expect((await hostFingerprint((await host({ KLR_VLLM_VERSION: "0.10.2" })).ctx)).vllm_version).toBe("0.10.2");
    const h = await host({}, { version: down });
    expect((await hostFingerprint(h.ctx)).vllm_version).toBeNull();
    await mkdir(join(h.layout.vllmSeen, ".."), { recursive: true });
    await writeFile(h.layout.vllmSeen, JSON.stringify({ version: "0.9.2", seen_at: "2026-12-01T00:00:00.000Z" }));
    expect((await hostFingerprint(h.ctx)).vllm_version).toBe("0.9.2");
  });

  it("a piece it cannot know is null, never a throw: no nvidia-smi, no such GPU, no config.json, no --config file yet", async () => {
    const home = await testdir();
    const h = await host(
      { KLR_VLLM_CONFIG: join(home, "not-yet.yaml") },
      { version: down, gpus: () => Promise.reject(new Error("nvidia-smi: not found")) },
    );
    expect(await hostFingerprint(h.ctx)).toEqual({
      vllm_version: null,
      gpu_name: null,
      gpu_total_mib: null,
      model_config_sha256: null,
      whisper_size: "small",
      kv_cache_dtype: "auto",
      tuned_flags: {},
    });
    const other = await host({ KLR_PRODUCTION_GPU_ID: "3" });
    expect(await hostFingerprint(other.ctx)).toMatchObject({ gpu_name: null, gpu_total_mib: null });
  });

  it("state that is there but unreadable fails closed, naming the file", async () => {
    const seen = await host({}, { version: down });
    await mkdir(join(seen.layout.vllmSeen, ".."), { recursive: true });
    await writeFile(seen.layout.vllmSeen, "{not json");
    await expect(hostFingerprint(seen.ctx)).rejects.toThrow(seen.layout.vllmSeen);

    const model = await host();
    await mkdir(join(model.modelPath, "config.json"));
    await expect(hostFingerprint(model.ctx)).rejects.toThrow(join(model.modelPath, "config.json"));

    const home = await testdir();
    const file = join(home, "production.yaml");
    await writeFile(file, "gpu-memory-utilization: [0.7\n");
    await expect(hostFingerprint((await host({ KLR_VLLM_CONFIG: file })).ctx)).rejects.toThrow(file);
  });
});

const base: Fingerprint = {
  vllm_version: "0.11.0",
  gpu_name: "NVIDIA H100 80GB HBM3",
  gpu_total_mib: 81047,
  model_config_sha256: "a".repeat(64),
  whisper_size: "small",
  kv_cache_dtype: "auto",
  tuned_flags: { "max-num-seqs": "64" },
};

describe("fingerprintDifferences", () => {
  it("is empty for the same host", () => {
    expect(fingerprintDifferences(base, { ...base, tuned_flags: { ...base.tuned_flags } })).toEqual([]);
  });

  it("says each difference in a plain sentence, then → now", () => {
    const now: Fingerprint = {
      vllm_version: "0.12.0",
      gpu_name: "NVIDIA H200",
      gpu_total_mib: 143771,
      model_config_sha256: "b".repeat(64),
      whisper_size: "medium",
      kv_cache_dtype: "fp8",
      tuned_flags: { "max-num-seqs": "128", "max-model-len": "8192" },
    };
    expect(fingerprintDifferences(base, now)).toEqual([
      "vLLM version 0.11.0 → 0.12.0",
      "GPU NVIDIA H100 80GB HBM3 → NVIDIA H200",
      "GPU memory (CUDA total) 81047 MiB → 143771 MiB",
      `model config.json sha256 ${"a".repeat(12)}… → ${"b".repeat(12)}…`,
      "Whisper size small → medium",
      "KV cache dtype auto → fp8",
      "--max-model-len unset → 8192",
      "--max-num-seqs 64 → 128",
    ]);
  });

  it("does not compare a field unknown on either side", () => {
    const unknown: Fingerprint = {
      ...base,
      vllm_version: null,
      gpu_name: null,
      gpu_total_mib: null,
      model_config_sha256: null,
      kv_cache_dtype: null,
    };
    expect(fingerprintDifferences(base, unknown)).toEqual([]);
    expect(fingerprintDifferences(unknown, { ...base, vllm_version: "0.12.0" })).toEqual([]);
  });
});
