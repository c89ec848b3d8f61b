import { buildSimVllm } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { runLoad } from "./run-load.ts";

describe("runLoad against the simulated vLLM", () => {
  it("reads its model list, its completion usage and its streams, and names its model as old vLLM demands", async () => {
    const app = buildSimVllm({
      model: "/models/llm/current",
      servedModelName: "llm",
      gpuMemoryUtilization: 0.75,
      tokenLatencyMs: 1,
      requireModel: true,
    });
    onTestFinished(() => app.close());
    const url = await app.listen({ port: 0, host: "127.0.0.1" });
    const report = await runLoad({ baseUrl: url, concurrency: 3, promptTokens: 20, outputTokens: 8, durationSeconds: 0.3, seed: 3 });
    expect(report.model).toBe("llm");
    expect(report.calibration?.promptTokens).toBeGreaterThan(0);
    expect(report.stoppedBy).toBe("duration");
    expect(report.totals.failed + report.totals.stopped).toBe(0);
    expect(report.totals.completed).toBeGreaterThan(3);
    expect(report.totals.peakConcurrency).toBe(3);
    for (const r of report.requests) {
      expect(r.outputTokensSeen).toBe(8);
      expect(r.itlMs).toHaveLength(7);
    }
    expect(report.totals.ttftMs.p95).toBeGreaterThan(0);
  });
});
