import { parsePrometheusText } from "@gpu-canary/vllm-client";
import { describe, expect, it } from "vitest";
import { FALLBACK_SHAPE, type PlanInput, type ProductionShape, mergeShapes, planLoad, shapeFromMetrics } from "./load-shape.ts";

/**
 * Production's /metrics as vLLM writes them (vllm/v1/metrics/loggers.py: request lengths in
 * build_1_2_5_buckets up to max_model_len, labels model_name and engine): 8 running, 20 requests
 * of 1,900–2,000 prompt tokens and 150–200 generated.
 */
const PRODUCTION = `
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="llama"} 8.0
# TYPE vllm:request_prompt_tokens histogram
vllm:request_prompt_tokens_bucket{engine="0",le="1.0",model_name="llama"} 0.0
vllm:request_prompt_tokens_bucket{engine="0",le="500.0",model_name="llama"} 0.0
vllm:request_prompt_tokens_bucket{engine="0",le="1000.0",model_name="llama"} 0.0
vllm:request_prompt_tokens_bucket{engine="0",le="2000.0",model_name="llama"} 20.0
vllm:request_prompt_tokens_bucket{engine="0",le="5000.0",model_name="llama"} 20.0
vllm:request_prompt_tokens_bucket{engine="0",le="+Inf",model_name="llama"} 20.0
vllm:request_prompt_tokens_count{engine="0",model_name="llama"} 20.0
# TYPE vllm:request_generation_tokens histogram
vllm:request_generation_tokens_bucket{engine="0",le="1.0",model_name="llama"} 0.0
vllm:request_generation_tokens_bucket{engine="0",le="100.0",model_name="llama"} 0.0
vllm:request_generation_tokens_bucket{engine="0",le="200.0",model_name="llama"} 20.0
vllm:request_generation_tokens_bucket{engine="0",le="+Inf",model_name="llama"} 20.0
`;

const at = new Date("2026-12-06T03:10:00Z");
const shape = (over: Partial<ProductionShape> = {}): ProductionShape => ({
  concurrency: 8,
  concurrencySeenAt: at.toISOString(),
  promptTokensP50: 1500,
  promptTokensP95: 1950,
  outputTokensP50: 150,
  outputTokensP95: 195,
  seenAt: at.toISOString(),
  ...over,
});
const plan = (over: Partial<PlanInput> = {}) =>
  planLoad({
    settings: { canaryLoadSeconds: 10 },
    production: { shape: shape(), source: "production's /metrics" },
    intentKind: null,
    kvTokens: null,
    maxModelLen: 8192,
    ...over,
  });

describe("production's shape from its /metrics", () => {
  it("takes the running gauge and the p50/p95 of the request length histograms", () => {
    // p50 1500 and p95 1950 interpolate in the 1000–2000 bucket as PromQL's histogram_quantile does
    expect(shapeFromMetrics(parsePrometheusText(PRODUCTION), at)).toEqual(shape());
  });

  it("is null for a production that has counted nothing (a fresh start)", () => {
    const fresh = PRODUCTION.replace(/ 20\.0$/gm, " 0.0").replace(/ 8\.0$/m, " 0.0");
    expect(shapeFromMetrics(parsePrometheusText(fresh), at)).toBeNull();
  });

  it("never takes a p95 below the mean, which the histogram's _sum and _count give exactly", () => {
    // 20 prompts of exactly 2,000 tokens: interpolation inside the 1,000–2,000 bucket reads a p95 of 1,950
    const exact = `${PRODUCTION}vllm:request_prompt_tokens_sum{engine="0",model_name="llama"} 40000.0\nvllm:request_generation_tokens_sum{engine="0",model_name="llama"} 3000.0\nvllm:request_generation_tokens_count{engine="0",model_name="llama"} 20.0\n`;
    const shape = shapeFromMetrics(parsePrometheusText(exact), at);
    expect(shape).toMatchObject({ promptTokensP95: 2000, promptTokensP50: 1500, outputTokensP95: 195 });
  });

  it("takes no lengths from a production that has counted fewer than 20 requests (after a restart: our own readiness checks)", () => {
    const restarted = PRODUCTION.replace(/ 20\.0$/gm, " 9.0");
    expect(shapeFromMetrics(parsePrometheusText(restarted), at)).toMatchObject({
      concurrency: 8,
      promptTokensP95: null,
      outputTokensP95: null,
    });
    const merged = mergeShapes(shape({ seenAt: "2026-12-05T03:00:00Z" }), shape({ promptTokensP50: null, promptTokensP95: null }));
    expect(merged).toMatchObject({ promptTokensP95: 1950, seenAt: "2026-12-05T03:00:00Z" });
  });

  it("keeps the highest concurrency of the last 7 days, and the newer lengths", () => {
    const before = shape({ concurrency: 12, concurrencySeenAt: "2026-12-01T03:00:00Z", promptTokensP95: 900 });
    const merged = mergeShapes(before, shape({ concurrency: 3 }));
    expect(merged).toMatchObject({ concurrency: 12, concurrencySeenAt: "2026-12-01T03:00:00Z", promptTokensP95: 1950 });
    const old = shape({ concurrency: 12, concurrencySeenAt: "2026-11-20T03:00:00Z" });
    expect(mergeShapes(old, shape({ concurrency: 3 }))).toMatchObject({ concurrency: 3, concurrencySeenAt: at.toISOString() });
    expect(mergeShapes(null, shape())).toEqual(shape());
    expect(mergeShapes(shape(), null)).toEqual(shape());
  });
});

describe("the canary's load plan", () => {
  it("is production's highest concurrency (at least 2) and its p95 lengths, naming where each came from", () => {
    const p = plan();
    expect(p).toMatchObject({ concurrency: 8, promptTokens: 1950, outputTokens: 195, durationSeconds: 10, rampUpSeconds: 5, extra: [] });
    expect(p.basis).toBe("concurrency 8, prompt tokens 1950, output tokens 195 (production's /metrics)");
    expect(plan({ production: { shape: shape({ concurrency: 1 }), source: "x" } }).concurrency).toBe(2);
  });

  it("takes the settings over production, and a small fallback when neither says", () => {
    const p = plan({ settings: { canaryLoadSeconds: 5, canaryConcurrency: 3, canaryPromptTokens: 100, canaryOutputTokens: 20 } });
    expect(p).toMatchObject({ concurrency: 3, promptTokens: 100, outputTokens: 20, durationSeconds: 5 });
    expect(p.basis).toBe(
      "concurrency 3 (KLR_CANARY_CONCURRENCY), prompt tokens 100 (KLR_CANARY_PROMPT_TOKENS), output tokens 20 (KLR_CANARY_OUTPUT_TOKENS)",
    );
    const mixed = plan({ settings: { canaryLoadSeconds: 5, canaryConcurrency: 3 } });
    expect(mixed.basis).toBe("concurrency 3 (KLR_CANARY_CONCURRENCY), prompt tokens 1950, output tokens 195 (production's /metrics)");
    const none = plan({ production: null });
    expect(none).toMatchObject(FALLBACK_SHAPE);
    expect(none.basis).toContain("(default: production showed none)");
  });

  it("an oom_max_model_len intent adds one request a few percent under max_model_len", () => {
    const p = plan({ intentKind: "oom_max_model_len" });
    expect(p.extra).toHaveLength(1);
    const [one] = p.extra;
    expect((one?.promptTokens ?? 0) + (one?.outputTokens ?? 0)).toBe(Math.floor(8192 * 0.97));
    expect(one?.why).toContain("max_model_len 8192");
    expect(plan({ intentKind: "oom_max_model_len", maxModelLen: null }).basis).toContain("no request at max_model_len");
  });

  it("oom_kv_cache and oom_runtime add long requests until the predicted KV cache is full", () => {
    for (const kind of ["oom_kv_cache", "oom_runtime"]) {
      const p = plan({ intentKind: kind, kvTokens: 40_000 });
      const steady = p.concurrency * (p.promptTokens + p.outputTokens);
      const extra = p.extra.reduce((sum, e) => sum + e.promptTokens + e.outputTokens, 0);
      expect(steady + extra).toBeGreaterThanOrEqual(36_000);
      expect(steady + extra).toBeLessThan(40_000);
      expect(p.extra.every((e) => e.promptTokens + e.outputTokens <= Math.floor(8192 * 0.97))).toBe(true);
    }
    // A cache far larger than production's requests: at most 32 longer ones, each within max_model_len.
    const huge = plan({ intentKind: "oom_kv_cache", kvTokens: 900_000 });
    expect(huge.extra.length).toBeLessThanOrEqual(32);
    expect(plan({ intentKind: "oom_kv_cache", kvTokens: 1000 }).extra).toEqual([]);
    // max_model_len caps each request: the reason says how far 32 of them get
    expect(huge.extra[0]?.why).toMatch(
      /^32 long requests to fill 90 % of the predicted KV cache of 900000 tokens \(they reach \d+ %: at most 32 of at most max_model_len's 7946 tokens\)$/,
    );
    // max_model_len unknown: never longer than production's requests, which vLLM takes
    const unknown = plan({ intentKind: "oom_kv_cache", kvTokens: 100_000, maxModelLen: null });
    expect(unknown.extra.every((e) => e.promptTokens + e.outputTokens === 1950 + 195)).toBe(true);
    expect(unknown.extra[0]?.why).toContain("max_model_len being unknown");
    expect(plan({ intentKind: "oom_kv_cache", kvTokens: null }).basis).toContain("the memory model did not size it");
    expect(plan({ intentKind: "manual", kvTokens: 40_000 }).extra).toEqual([]);
  });

  it("cuts lengths that could never pass max_model_len, and says so", () => {
    const p = plan({ settings: { canaryLoadSeconds: 10, canaryPromptTokens: 9000 }, maxModelLen: 4096 });
    expect(p.promptTokens + p.outputTokens).toBeLessThanOrEqual(Math.floor(4096 * 0.97));
    expect(p.basis).toContain("to fit max_model_len 4096");
  });
});
