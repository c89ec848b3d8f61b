import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VLLM_CONTEXT_BYTES, predictMemory } from "./memory-model.ts";
import { llama31_8b, qwen25_7b } from "./test-fixtures/model-shapes.ts";
import { accountingFor } from "./vllm-accounting.ts";

const GIB = 1024 ** 3;

interface StartupLog {
  id: string;
  source: string;
  version: string | null;
  model: string | null;
  total_gib: number;
  util: number;
  weights_gib?: number;
  max_model_len?: number;
  free_gib?: number;
  logged?: { activation_gib: number; non_torch_gib: number; kv_gib: number };
  outcome: "starts" | "fails" | "refuses_to_start";
}

const MODELS = { "llama-3.1-8b": llama31_8b, "qwen2.5-7b": qwen25_7b };

const { logs } = JSON.parse(readFileSync(join(import.meta.dirname, "test-fixtures", "startup-logs.json"), "utf8")) as {
  logs: StartupLog[];
};

function predict(log: StartupLog) {
  const totalBytes = log.total_gib * GIB;
  // A refusal's log gives the free memory vLLM found, after its own context: the rest is other processes.
  const othersBytes = log.free_gib === undefined ? 0 : totalBytes - log.free_gib * GIB - VLLM_CONTEXT_BYTES;
  return predictMemory({
    totalBytes,
    othersBytes,
    whisperBytes: 0,
    gpuName: "",
    util: log.util,
    accounting: accountingFor(log.version),
    shape: MODELS[(log.model ?? "llama-3.1-8b") as keyof typeof MODELS],
    weightsBytes: (log.weights_gib ?? 14.99) * GIB,
    maxModelLen: log.max_model_len ?? 8192,
    kvCacheDtype: "auto",
  });
}

describe("the predictive model against published vLLM startup logs", () => {
  it("holds at least eight logs, each with its source", () => {
    expect(logs.length).toBeGreaterThanOrEqual(8);
    for (const log of logs) expect(log.source).toMatch(/^https:\/\/github\.com\//);
  });

  it.each(logs.filter((l) => l.logged))("$id: the KV cache within 0.5 GiB, the outcome the same", (log) => {
    const p = predict(log);
    const kv = p.kvCacheBytes / GIB;
    expect(Math.abs(kv - (log.logged?.kv_gib ?? NaN))).toBeLessThan(0.5);
    const serves = p.checks.filter((c) => c.name !== "fits_with_whisper").every((c) => c.ok);
    expect(serves ? "starts" : "fails").toBe(log.outcome);
  });

  it.each(logs.filter((l) => l.outcome === "refuses_to_start"))("$id: vLLM's startup check refuses, as logged", (log) => {
    const check = predict(log).checks.find((c) => c.name === "startup_free_memory");
    expect(check?.ok).toBe(false);
    // The requested amount vLLM printed: ceil(util × total).
    expect(check?.detail).toContain(`${(Math.ceil(log.util * log.total_gib * GIB) / GIB).toFixed(2)} GiB`);
  });

  it("reports the errors (closing note and README): median and worst KV error", () => {
    const errors = logs.filter((l) => l.logged).map((l) => Math.abs(predict(l).kvCacheBytes / GIB - (l.logged?.kv_gib ?? 0)));
    const sorted = [...errors].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const worst = sorted.at(-1) ?? 0;
    console.log(`KV error over ${errors.length} logs: median ${median.toFixed(2)} GiB, worst ${worst.toFixed(2)} GiB`);
    expect(worst).toBeLessThan(0.5);
  });
});
