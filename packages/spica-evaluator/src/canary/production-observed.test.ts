import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { parsePrometheusText } from "@gpu-canary/vllm-client";
import { describe, expect, it } from "vitest";
import { baselineFromMetrics, observeProduction } from "./production-observed.ts";

/** Latency histograms as vLLM 0.10 writes them (vllm/v1/metrics/loggers.py): 40 requests. */
const LATENCY = (itlName: string) => `
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.02",model_name="m"} 0.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.04",model_name="m"} 20.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.06",model_name="m"} 40.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 40.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 40.0
${itlName}_bucket{engine="0",le="0.01",model_name="m"} 0.0
${itlName}_bucket{engine="0",le="0.025",model_name="m"} 4000.0
${itlName}_bucket{engine="0",le="+Inf",model_name="m"} 4000.0
vllm:num_requests_running{engine="0",model_name="m"} 4.0
vllm:request_prompt_tokens_bucket{engine="0",le="1000.0",model_name="m"} 0.0
vllm:request_prompt_tokens_bucket{engine="0",le="2000.0",model_name="m"} 40.0
vllm:request_prompt_tokens_bucket{engine="0",le="+Inf",model_name="m"} 40.0
`;

describe("production's baseline from its own histograms", () => {
  it("takes TTFT and inter-token p50/p95, under vLLM's newer or older inter-token name", () => {
    for (const name of ["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"]) {
      expect(baselineFromMetrics(parsePrometheusText(LATENCY(name)))).toEqual({
        ttftP50Ms: 40,
        ttftP95Ms: 58,
        itlP50Ms: 17.5,
        itlP95Ms: 24.3,
        requests: 40,
        ttftP95FloorMs: 40,
        itlP95FloorMs: 10,
        source: "production's /metrics histograms (40 requests since it started)",
      });
    }
  });

  it("is null before production has counted a request", () => {
    expect(baselineFromMetrics(parsePrometheusText(LATENCY("x").replace(/ 40\.0$/gm, " 0.0")))).toBeNull();
  });
});

describe("observing production before a run", () => {
  it("keeps the shape in vllm_seen.json, and a production that does not answer is shaped by the last one seen", async () => {
    const path = join(await testdir(), "vllm_seen.json");
    const up = await observeProduction({
      metrics: () => Promise.resolve(parsePrometheusText(LATENCY("vllm:inter_token_latency_seconds"))),
      vllmSeenPath: path,
      now: new Date("2026-12-06T03:00:00Z"),
    });
    expect(up.shape).toMatchObject({ source: "production's /metrics", shape: { concurrency: 4, promptTokensP95: 1950 } });
    expect(JSON.parse(readFileSync(path, "utf8"))).toMatchObject({ load_shape: { concurrency: 4, prompt_tokens_p95: 1950 } });
    const down = await observeProduction({
      metrics: () => Promise.reject(new Error("connect ECONNREFUSED")),
      vllmSeenPath: path,
      now: new Date("2026-12-06T04:00:00Z"),
    });
    expect(down.baseline).toBeNull();
    expect(down.shape).toMatchObject({ shape: { concurrency: 4, promptTokensP95: 1950 } });
    expect(down.shape?.source).toBe(
      "production's /metrics as last seen at 2026-12-06T03:00:00.000Z (vllm_seen.json): production does not answer now",
    );
  });

  it("fails closed on an unreadable vllm_seen.json, naming it", async () => {
    const path = join(await testdir(), "vllm_seen.json");
    await writeFile(path, "{not json");
    await expect(observeProduction({ metrics: () => Promise.resolve([]), vllmSeenPath: path, now: new Date() })).rejects.toThrow(path);
  });
});
