import { type LoadReport, totalsOf } from "@gpu-canary/canary-load";
import type { RequestRecord } from "@gpu-canary/canary-load";
import { createVllmClient, parsePrometheusText } from "@gpu-canary/vllm-client";
import { buildSimVllm } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { type CanaryEvidence, MIN_BASELINE_REQUESTS, judge, kvUsageOf, preemptionsOf, testUnderLoad } from "./canary-test.ts";
import type { ProductionBaseline } from "./production-observed.ts";

const request = (over: Partial<RequestRecord> = {}): RequestRecord => ({
  index: 0,
  kind: "steady",
  startedMs: 0,
  promptTokensAsked: 2000,
  promptWords: 1538,
  promptTokensSeen: 1996,
  outputTokensAsked: 200,
  outputTokensSeen: 200,
  ttftMs: 80,
  itlMs: [20, 21, 22],
  e2eMs: 4100,
  failure: null,
  ...over,
});

function evidence(records: RequestRecord[], over: Partial<CanaryEvidence> = {}): CanaryEvidence {
  const load: LoadReport = {
    model: "llama",
    tokensPerWord: 1.3,
    calibration: null,
    asked: { concurrency: 8, promptTokens: 2000, outputTokens: 200, durationSeconds: 10, extra: [] },
    stoppedBy: "duration",
    durationMs: 12_000,
    totals: totalsOf(records, 12_000, 8),
    requests: records,
  };
  return {
    errors: [],
    death: null,
    timedOut: false,
    plan: null,
    load,
    preemptions: 0,
    kvCacheUsagePeak: 0.62,
    server: { ttftP50Ms: 50, ttftP95Ms: 90, itlP50Ms: 18, itlP95Ms: 21, requests: 20, ttftP95FloorMs: 80, itlP95FloorMs: 10 },
    metricsLost: false,
    serverBeforeExtras: null,
    ...over,
  };
}

const many = (n: number, over: Partial<RequestRecord> = {}) => Array.from({ length: n }, (_, i) => request({ index: i, ...over }));
const baseline = (over: Partial<ProductionBaseline> = {}): ProductionBaseline => ({
  ttftP50Ms: 60,
  ttftP95Ms: 100,
  itlP50Ms: 18,
  itlP95Ms: 20,
  requests: 500,
  ttftP95FloorMs: 80,
  itlP95FloorMs: 10,
  source: "production's /metrics histograms (500 requests since it started)",
  ...over,
});
const limits = { samplesWanted: 5, ttftP95Ms: 2000, maxSlowdown: 1.5, maxPreemptions: 0 };

describe("the verdict on a canary's load", () => {
  it("passes with no death, no error, no preemption and latency within both limits, with the numbers in the reason", () => {
    const v = judge(evidence(many(20)), baseline(), limits);
    expect(v.status).toBe("passed");
    expect(v.reason).toBe(
      "20 requests under the load (8 in flight of 2000 + 200 tokens) in 12.0 s: TTFT p95 80 ms, inter-token p95 22 ms (TTFT p95 by vLLM's own histograms: canary 90 ms, production 100 ms), 0 preemptions; KV-cache usage peaked at 62 %, 333 output tokens/s",
    );
  });

  it("fails on preemptions above KLR_CANARY_MAX_PREEMPTIONS, naming them and the KV cache's peak", () => {
    const v = judge(evidence(many(20), { preemptions: 7, kvCacheUsagePeak: 1 }), baseline(), limits);
    expect(v).toEqual({
      status: "failed",
      reason:
        "7 preemptions under the load (8 in flight of 2000 + 200 tokens), above 0 (KLR_CANARY_MAX_PREEMPTIONS): its KV cache cannot hold production's requests; KV-cache usage peaked at 100 %",
    });
    expect(judge(evidence(many(20), { preemptions: 7 }), baseline(), { ...limits, maxPreemptions: 10 }).status).toBe("passed");
  });

  it("fails on the canary's death, with vLLM's own line", () => {
    const v = judge(evidence(many(3), { death: "torch.OutOfMemoryError: CUDA out of memory." }), baseline(), limits);
    expect(v).toEqual({ status: "failed", reason: "the canary exited under load: torch.OutOfMemoryError: CUDA out of memory." });
    const before = judge({ ...evidence([]), load: null, preemptions: null, death: "ValueError: No available memory" }, null, limits);
    expect(before.reason).toBe("the canary exited: ValueError: No available memory");
  });

  it("fails on a request vLLM refused, with its message", () => {
    const records = [
      ...many(10),
      request({ index: 10, kind: "extra", failure: { kind: "http", status: 400, message: "maximum context length is 8192 tokens" } }),
    ];
    const v = judge(evidence(records), baseline(), limits);
    expect(v).toEqual({
      status: "failed",
      reason: "1 of 11 load requests failed (8 in flight of 2000 + 200 tokens): HTTP 400 maximum context length is 8192 tokens",
    });
  });

  it("is inconclusive when no load ran or too few requests completed", () => {
    expect(judge({ ...evidence([]), load: null, errors: ["the canary was not healthy before its timeout"] }, null, limits)).toEqual({
      status: "inconclusive",
      reason: "the canary was not healthy before its timeout",
    });
    const stopped = [...many(3), ...many(4, { failure: { kind: "stopped", message: "deadline" } })];
    const v = judge(evidence(stopped), baseline(), limits);
    expect(v.status).toBe("inconclusive");
    expect(v.reason).toBe(
      "only 3 load requests completed, KLR_CANARY_SAMPLES wants 5, 4 stopped at the canary's timeout (raise KLR_CANARY_TIMEOUT or lower KLR_CANARY_LOAD_SECONDS)",
    );
  });

  it("fails above the absolute TTFT limit, and above the slowdown of production's own TTFT or inter-token latency", () => {
    expect(judge(evidence(many(20, { ttftMs: 2500 })), baseline(), limits).reason).toMatch(
      /^TTFT p95 2500 ms under the load .* is above the limit 2000 ms \(KLR_CANARY_TTFT_P95_MS\)/,
    );
    // Compared as production's baseline is measured: by the canary's own histograms, not the client's clock —
    // and only when even the lower bound of the bucket the canary's p95 fell in is past the limit.
    const server = (over: object) => ({
      ttftP50Ms: 50,
      ttftP95Ms: 90,
      itlP50Ms: 18,
      itlP95Ms: 21,
      requests: 20,
      ttftP95FloorMs: 80,
      itlP95FloorMs: 10,
      ...over,
    });
    expect(judge(evidence(many(20), { server: server({ ttftP95Ms: 200, ttftP95FloorMs: 160 }) }), baseline(), limits).reason).toMatch(
      /^TTFT p95 200 ms \(at least 160 ms\) is 2\.00× production's 100 ms \(vLLM's histograms of each\), above 1\.5× \(KLR_CANARY_MAX_SLOWDOWN\)/,
    );
    expect(judge(evidence(many(20), { server: server({ itlP95Ms: 40, itlP95FloorMs: 35 }) }), baseline(), limits).reason).toMatch(
      /^inter-token latency p95 40 ms \(at least 35 ms\) is 2\.00× production's 20 ms/,
    );
    // 200 ms interpolated inside a 100–250 ms bucket: it may be 1.0× production's; not proven slower.
    expect(judge(evidence(many(20), { server: server({ ttftP95Ms: 200, ttftP95FloorMs: 100 }) }), baseline(), limits).status).toBe(
      "passed",
    );
    // The client's TTFT (HTTP, streaming) is not held against production's server-side one.
    expect(judge(evidence(many(20, { ttftMs: 400 })), baseline(), limits).status).toBe("passed");
  });

  it("with the intent's longer requests: they must finish; TTFT is judged on the requests before them, the rest reported", () => {
    const withExtra = (records: RequestRecord[], over: Partial<CanaryEvidence> = {}) => {
      const e = evidence(records, over);
      return { ...e, load: e.load && { ...e.load, asked: { ...e.load.asked, extra: [{ promptTokens: 7930, outputTokens: 16 }] } } };
    };
    const early = many(8, { ttftMs: 80 });
    const beside = Array.from({ length: 12 }, (_, i) => request({ index: 8 + i, startedMs: 2000, ttftMs: 3000 }));
    const extra = request({ index: 20, kind: "extra", startedMs: 1000, promptTokensAsked: 7930, outputTokensAsked: 16 });
    expect(judge(withExtra([...early, ...beside, extra]), baseline(), limits)).toEqual({
      status: "passed",
      reason:
        "21 requests under the load (8 in flight of 2000 + 200 tokens and 1 more) in 12.0 s: 0 preemptions; KV-cache usage peaked at 62 %, 350 output tokens/s; TTFT p95 80 ms of the 8 before them; beside the intent's longer requests TTFT p95 3000 ms, inter-token p95 22 ms (reported, not judged)",
    });
    const slowEarly = many(8, { ttftMs: 2500 });
    expect(judge(withExtra([...slowEarly, ...beside, extra]), baseline(), limits).reason).toMatch(
      /^TTFT p95 2500 ms of the 8 requests before the intent's longer ones is above the limit 2000 ms/,
    );
    expect(judge(withExtra([...early, ...beside, extra], { preemptions: 2 }), baseline(), limits).status).toBe("failed");
    const stopped = { ...extra, failure: { kind: "stopped" as const, message: "deadline" } };
    expect(judge(withExtra([...early, ...beside, stopped]), baseline(), limits)).toEqual({
      status: "inconclusive",
      reason: "1 of the intent's 1 longer requests did not finish before the canary's timeout (raise KLR_CANARY_TIMEOUT)",
    });
  });

  it("with the intent's longer requests: the steady load before them is compared with production by vLLM's histograms", () => {
    const withExtra = (over: Partial<CanaryEvidence>) => {
      const e = evidence(
        [...many(8, { ttftMs: 80 }), request({ index: 8, kind: "extra", startedMs: 1000, promptTokensAsked: 7930 })],
        over,
      );
      return { ...e, load: e.load && { ...e.load, asked: { ...e.load.asked, extra: [{ promptTokens: 7930, outputTokens: 200 }] } } };
    };
    const steady = { ttftP50Ms: 50, ttftP95Ms: 90, itlP50Ms: 18, itlP95Ms: 21, requests: 24, ttftP95FloorMs: 80, itlP95FloorMs: 20 };
    const fine = judge(withExtra({ serverBeforeExtras: steady }), baseline(), limits);
    expect(fine.status).toBe("passed");
    expect(fine.reason).toContain("(by vLLM's own histograms then: canary 90 ms, production 100 ms)");
    // the whole load's histograms (the longer requests' prefill in them) are slow: not held against the canary
    const slowBeside = { ...steady, ttftP95Ms: 900, ttftP95FloorMs: 800 };
    expect(judge(withExtra({ serverBeforeExtras: steady, server: slowBeside }), baseline(), limits).status).toBe("passed");
    // the steady load alone, slow: failed, naming the numbers
    expect(judge(withExtra({ serverBeforeExtras: slowBeside }), baseline(), limits)).toEqual({
      status: "failed",
      reason:
        "TTFT p95 900 ms (at least 800 ms) is 9.00× production's 100 ms (vLLM's histograms of each), above 1.5× (KLR_CANARY_MAX_SLOWDOWN) under the steady load before the intent's longer requests (8 in flight of 2000 + 200 tokens and 1 more); KV-cache usage peaked at 62 %",
    });
    const slowTokens = { ...steady, itlP95Ms: 90, itlP95FloorMs: 80 };
    expect(judge(withExtra({ serverBeforeExtras: slowTokens }), baseline(), limits).reason).toMatch(
      /^inter-token latency p95 90 ms .* under the steady load before/,
    );
    // a p95 of a handful is their slowest: too few before them are not compared
    const few = judge(withExtra({ serverBeforeExtras: { ...slowBeside, requests: 8 } }), baseline(), limits);
    expect(few.status).toBe("passed");
    expect(few.reason).toContain("(not compared with production: vLLM's histograms counted 8 requests before them, 20 needed)");
  });

  it("is inconclusive when the canary does not count its preemptions", () => {
    expect(judge(evidence(many(20), { preemptions: null }), baseline(), limits)).toEqual({
      status: "inconclusive",
      reason: "the canary's /metrics have no vllm:num_preemptions_total: whether its KV cache held the load is unknown",
    });
  });

  it("is inconclusive when the canary's /metrics stopped answering during the load: its preemptions are unknown", () => {
    expect(judge(evidence(many(20), { metricsLost: true, preemptions: null }), baseline(), limits)).toEqual({
      status: "inconclusive",
      reason: "the canary's /metrics answered before the load and not after it: its preemptions are unknown",
    });
  });

  it("compares with production only when its histograms counted enough requests, and the canary's gave numbers", () => {
    const slow = evidence(many(20), {
      server: { ttftP50Ms: 150, ttftP95Ms: 200, itlP50Ms: 18, itlP95Ms: 21, requests: 20, ttftP95FloorMs: 160, itlP95FloorMs: 10 },
    });
    const few = judge(slow, baseline({ requests: MIN_BASELINE_REQUESTS - 1 }), limits);
    expect(few.status).toBe("passed");
    expect(few.reason).toMatch(
      new RegExp(
        `; not compared with production: its histograms counted ${MIN_BASELINE_REQUESTS - 1} requests since it started \\(${MIN_BASELINE_REQUESTS} needed\\)$`,
      ),
    );
    expect(judge(slow, null, limits).reason).toContain("not compared with production: its /metrics did not answer, or counted no request");
    expect(judge({ ...slow, server: null }, baseline(), limits).reason).toContain(
      "not compared with production: the canary's /metrics gave no latency histograms",
    );
  });
});

describe("the canary's own /metrics", () => {
  it("sums preemptions over engines and reads KV usage under either name", () => {
    const v010 = parsePrometheusText(
      'vllm:num_preemptions_total{engine="0",model_name="m"} 3.0\nvllm:num_preemptions_total{engine="1",model_name="m"} 2.0\nvllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5\n',
    );
    expect(preemptionsOf(v010)).toBe(5);
    expect(kvUsageOf(v010)).toBe(0.5);
    // vLLM 0.8's name (vllm/v1/metrics/loggers.py before the rename)
    const v08 = parsePrometheusText('vllm:gpu_cache_usage_perc{model_name="m"} 0.25\n');
    expect(kvUsageOf(v08)).toBe(0.25);
    expect(preemptionsOf(v08)).toBeNull();
  });
});

describe("testUnderLoad against the simulated vLLM", () => {
  it("runs no load that cannot end before the canary's timeout, and says how much was left", async () => {
    const app = buildSimVllm({ model: "/models/llm", servedModelName: "llm", gpuMemoryUtilization: 0.75, tokenLatencyMs: 1 });
    onTestFinished(() => app.close());
    const baseUrl = await app.listen({ port: 0, host: "127.0.0.1" });
    const plan = { concurrency: 2, promptTokens: 64, outputTokens: 8, durationSeconds: 30, rampUpSeconds: 0, extra: [], basis: "test" };
    const evidence = await testUnderLoad(createVllmClient({ baseUrl }), {
      baseUrl,
      minRequests: 5,
      plan: () => Promise.resolve(plan),
      deadline: Date.now() + 5_000,
    });
    expect(evidence.load).toBeNull();
    expect(evidence.timedOut).toBe(true);
    expect(evidence.errors.at(-1)).toMatch(
      /^only [0-5]\.\d s of the canary's timeout were left for a 30 s load \(KLR_CANARY_TIMEOUT covers the start, the warm-up and KLR_CANARY_LOAD_SECONDS\)$/,
    );
    expect(judge(evidence, null, limits)).toEqual({ status: "inconclusive", reason: evidence.errors.at(-1) });
  });
});
