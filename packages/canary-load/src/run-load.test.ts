import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { onTestFinished } from "vitest";
import { describe, expect, it } from "vitest";
import { CanaryLoadError } from "./errors.ts";
import { runLoad } from "./run-load.ts";
import { type FakeVllmOptions, startFakeVllm } from "./test-fixtures/fake-vllm.ts";

async function fake(options: FakeVllmOptions = {}) {
  const server = await startFakeVllm(options);
  onTestFinished(() => server.close());
  return server;
}

const base = { concurrency: 4, promptTokens: 400, outputTokens: 6, durationSeconds: 0.6, seed: 1 };

describe("runLoad", () => {
  it("keeps the asked concurrency in flight, never more, for the duration, then stops by itself", async () => {
    const vllm = await fake({ tokenDelayMs: 3 });
    const started = performance.now();
    const report = await runLoad({ ...base, baseUrl: vllm.url });
    const took = performance.now() - started;

    expect(report.stoppedBy).toBe("duration");
    expect(vllm.state.peak).toBe(4);
    expect(report.totals.peakConcurrency).toBe(4);
    expect(report.totals.started).toBeGreaterThan(8);
    expect(report.totals.completed).toBe(report.totals.started);
    expect(report.totals.failed + report.totals.stopped).toBe(0);
    // It stops by itself: well before a load that ran on would (the slack is for a busy machine).
    expect(took).toBeLessThan(600 + 9000);
    expect(report.requests.every((r) => r.startedMs < 601)).toBe(true);
    // the server sees the last responses close a moment after the client has read them
    await expect.poll(() => vllm.state.inFlight).toBe(0);
  });

  it("names the served model, asked once, and asks vLLM for the full output length, streamed with usage", async () => {
    const vllm = await fake({ model: "served-name" });
    const report = await runLoad({ ...base, baseUrl: vllm.url, durationSeconds: 0.2 });
    expect(report.model).toBe("served-name");
    expect(vllm.state.modelsAsked).toBe(1);
    const [calibration, ...load] = vllm.state.bodies;
    expect(calibration).toMatchObject({ model: "served-name", max_tokens: 1, stream: false });
    expect(load.length).toBeGreaterThan(0);
    for (const body of load)
      expect(body).toMatchObject({
        model: "served-name",
        max_tokens: 6,
        min_tokens: 6,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      });
    expect(new Set(load.map((b) => b.prompt.split(" ").slice(0, 4).join(" "))).size).toBe(load.length);
  });

  it("calibrates prompt lengths from vLLM's usage, and reports the tokens asked and seen", async () => {
    // the fake counts 1.25 tokens a word plus one: 200 words → 251, so 400 tokens are 319 words → 400
    const vllm = await fake({ tokensPerWord: 1.25 });
    const report = await runLoad({ ...base, baseUrl: vllm.url, durationSeconds: 0.2 });
    expect(report.calibration).toEqual({ words: 200, promptTokens: 251 });
    expect(report.tokensPerWord).toBeCloseTo(1.255);
    const r = report.requests[0];
    expect(r).toMatchObject({ promptTokensAsked: 400, promptWords: 319, promptTokensSeen: 400, outputTokensAsked: 6, outputTokensSeen: 6 });
    expect(report.totals.promptTokensSeenP50).toBe(400);
    expect(r?.ttftMs).toBeGreaterThan(0);
    expect(r?.itlMs).toHaveLength(5);
    expect(r?.e2eMs).toBeGreaterThanOrEqual(r?.ttftMs ?? Infinity);
    expect(report.totals.outputTokens).toBe(6 * report.totals.started);
    expect(report.totals.ttftMs.p95).not.toBeNull();
    expect(report.totals.itlMs.p50).not.toBeNull();
    expect(report.totals.outputTokensPerSecond).toBeCloseTo(report.totals.outputTokens / (report.durationMs / 1000));
  });

  it("skips the model lookup and the calibration when told the model and tokens per word", async () => {
    const vllm = await fake();
    const report = await runLoad({ ...base, baseUrl: vllm.url, durationSeconds: 0.1, model: "llm", tokensPerWord: 2 });
    expect(vllm.state.modelsAsked).toBe(0);
    expect(vllm.state.bodies.every((b) => b.stream === true)).toBe(true);
    expect(report.calibration).toBeNull();
    expect(report.requests[0]?.promptWords).toBe(200);
  });

  it("sends the API key on every request, and times the first token from the first chunk with text", async () => {
    const vllm = await fake({ emptyFirstChunk: true, tokenDelayMs: 5 });
    const report = await runLoad({ ...base, baseUrl: vllm.url, durationSeconds: 0.1, apiKey: "sekret" });
    expect([...vllm.state.authorizations]).toEqual(["Bearer sekret"]);
    expect(vllm.state.modelsAsked).toBe(1);
    const r = report.requests[0];
    expect(r?.itlMs).toHaveLength(5);
    expect(r?.outputTokensSeen).toBe(6);
    expect(r?.ttftMs).toBeGreaterThanOrEqual(4);
  });

  it("counts output tokens by chunks when an older vLLM streams no usage", async () => {
    const vllm = await fake({ usageChunk: false });
    const report = await runLoad({ ...base, baseUrl: vllm.url, durationSeconds: 0.1 });
    expect(report.requests[0]).toMatchObject({ promptTokensSeen: null, outputTokensSeen: 6, failure: null });
    expect(report.totals.promptTokensSeenP50).toBeNull();
  });

  it("stops starting requests at maxRequests, extras included", async () => {
    const vllm = await fake();
    const report = await runLoad({
      ...base,
      baseUrl: vllm.url,
      durationSeconds: 30,
      maxRequests: 7,
      extra: [{ promptTokens: 50, outputTokens: 3 }],
    });
    expect(report.stoppedBy).toBe("max_requests");
    expect(report.totals.started).toBe(7);
    expect(vllm.state.bodies).toHaveLength(8); // and the calibration
  });

  it("keeps starting steady requests past the duration until minRequests started, when each outlasts it", async () => {
    // 6 tokens of 100 ms: each request outlasts the 0.2 s load, so two slots alone would start two
    const vllm = await fake({ tokenDelayMs: 100 });
    const report = await runLoad({ ...base, concurrency: 2, baseUrl: vllm.url, durationSeconds: 0.2, minRequests: 5 });
    expect(report.totals.started).toBeGreaterThanOrEqual(5);
    expect(report.totals.started).toBeLessThanOrEqual(6);
    expect(report.totals.completed).toBe(report.totals.started);
    const short = await runLoad({ ...base, concurrency: 2, baseUrl: vllm.url, durationSeconds: 0.2 });
    expect(short.totals.started).toBe(2);
  });

  it("spreads the first wave over rampUpSeconds, as production's requests arrive one by one, and sends the extras after it", async () => {
    // each request outlasts the ramp, so the first four to start are the four slots' first
    const vllm = await fake({ tokenDelayMs: 100 });
    const extra = [{ promptTokens: 100, outputTokens: 4 }];
    const report = await runLoad({ ...base, baseUrl: vllm.url, durationSeconds: 0.8, rampUpSeconds: 0.4, extra });
    const firsts = report.requests.filter((r) => r.kind === "steady").slice(0, 4);
    // slots start 0, 100, 200 and 300 ms into the load (timers never fire early; a busy machine makes them late)
    firsts.forEach((r, slot) => expect(r.startedMs).toBeGreaterThanOrEqual(slot * 100 - 1));
    expect(report.requests.find((r) => r.kind === "extra")?.startedMs).toBeGreaterThanOrEqual(399);
    expect(report.totals.failed + report.totals.stopped).toBe(0);
    await expect(runLoad({ ...base, baseUrl: vllm.url, rampUpSeconds: 1 })).rejects.toThrow(
      /rampUpSeconds \(1\) must be at most durationSeconds \(0.6\)/,
    );
  });

  it("runs the extra requests once each beside the steady load", async () => {
    const vllm = await fake({ tokenDelayMs: 5 });
    const extra = [
      { promptTokens: 3000, outputTokens: 40 },
      { promptTokens: 3000, outputTokens: 40 },
    ];
    // the hook runs once, before any extra started: the caller reads the steady load's numbers there
    const extrasSeenAtHook: number[] = [];
    const extrasSeen = () => vllm.state.bodies.filter((b) => b.max_tokens === 40).length;
    const onExtrasStarting = () => extrasSeenAtHook.push(extrasSeen());
    const report = await runLoad({ ...base, concurrency: 3, baseUrl: vllm.url, durationSeconds: 0.3, extra, onExtrasStarting });
    const extras = report.requests.filter((r) => r.kind === "extra");
    expect(extras).toHaveLength(2);
    expect(extrasSeenAtHook).toEqual([0]);
    expect(extrasSeen()).toBe(2);
    for (const r of extras) {
      expect(r).toMatchObject({ failure: null, outputTokensSeen: 40, promptTokensAsked: 3000 });
      // one BOS token spread over the calibration's 200 words is 11 tokens over 2,390
      expect(Math.abs((r.promptTokensSeen ?? 0) - 3000)).toBeLessThanOrEqual(15);
    }
    expect(vllm.state.peak).toBe(5);
    expect(report.totals.peakConcurrency).toBe(5);
    expect(report.asked.extra).toEqual(extra);
  });

  it("records vLLM's refusals, errors mid-stream and cut streams per request, and keeps the load going", async () => {
    const vllm = await fake({
      behaviour: (n) =>
        n === 3
          ? { kind: "fail", status: 400, message: "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens" }
          : n === 4
            ? { kind: "drop_after", chunks: 2 }
            : n === 5
              ? { kind: "error_event_after", chunks: 1, message: "EngineCore encountered an issue" }
              : n === 6
                ? { kind: "end_after", chunks: 3 }
                : { kind: "answer" },
    });
    const report = await runLoad({ ...base, concurrency: 1, baseUrl: vllm.url, durationSeconds: 0.3 });
    // request n (from 1) of the server is the load's n − 2: the calibration came first
    const [ok, refused, dropped, streamError, ended] = report.requests;
    expect(ok?.failure).toBeNull();
    expect(refused?.failure).toEqual({ kind: "http", status: 400, message: expect.stringContaining("maximum context length is 4096") });
    expect(dropped?.failure).toMatchObject({ kind: "dropped", message: expect.stringContaining("cut after 2 chunks") });
    expect(dropped?.outputTokensSeen).toBe(2);
    expect(streamError?.failure).toEqual({ kind: "stream_error", message: "EngineCore encountered an issue" });
    expect(ended?.failure).toEqual({ kind: "dropped", message: "the stream ended after 3 chunks without data: [DONE]" });
    expect(report.totals.failed).toBe(4);
    expect(report.totals.completed).toBe(report.totals.started - 4);
    expect(report.totals.completed).toBeGreaterThan(1);
  });

  it("fails a request whose stream is not vLLM's format, saying what came", async () => {
    const events = ['data: {"choices":[{"text":5}]}\n\n', "data: <html>\n\n"];
    let n = 0;
    const server = createServer((req, res) => {
      req.resume().on("end", () => res.writeHead(200, { "content-type": "text/event-stream" }).end(events[n++ % 2]));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { port } = server.address() as AddressInfo;
    const report = await runLoad({
      ...base,
      concurrency: 1,
      maxRequests: 2,
      model: "m",
      tokensPerWord: 1,
      baseUrl: `http://127.0.0.1:${port}`,
    });
    expect(report.requests.map((r) => r.failure)).toEqual([
      { kind: "bad_response", message: 'streamed an event not in vLLM\'s format: {"choices":[{"text":5}]}' },
      { kind: "bad_response", message: "streamed an event that is not JSON: <html>" },
    ]);
  });

  it("stops requests still in flight at the hard deadline and says so", async () => {
    const vllm = await fake({ behaviour: (n) => (n === 1 ? { kind: "answer" } : { kind: "hang" }) });
    const started = performance.now();
    const report = await runLoad({ ...base, concurrency: 2, baseUrl: vllm.url, durationSeconds: 0.2, deadlineSeconds: 0.8 });
    // The hanging request would run on forever: the deadline ends it (the slack is for a busy machine).
    expect(performance.now() - started).toBeLessThan(800 + 9000);
    expect(report.stoppedBy).toBe("deadline");
    expect(report.totals).toMatchObject({ started: 2, completed: 0, failed: 0, stopped: 2 });
    expect(report.requests[0]?.failure).toEqual({ kind: "stopped", message: "stopped: still running at the load's deadline (0.8 s)" });
    await expect.poll(() => vllm.state.inFlight).toBe(0);
  });

  it("stops at once when the caller's signal aborts, and reports what ran", async () => {
    const vllm = await fake({ tokenDelayMs: 20 });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 250);
    const started = performance.now();
    const report = await runLoad({ ...base, outputTokens: 1000, baseUrl: vllm.url, durationSeconds: 60, signal: controller.signal });
    // Long before the 60 s the load asked for (the slack is for a busy machine).
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(report.stoppedBy).toBe("signal");
    expect(report.totals.stopped).toBe(4);
    expect(report.requests[0]?.failure?.message).toBe("stopped: the load was cancelled");
  });

  it("refuses to start with a signal already aborted", async () => {
    await expect(runLoad({ ...base, baseUrl: "http://127.0.0.1:9", signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
  });
});

describe("runLoad when no load can be started", () => {
  it("refuses unusable options, naming each", async () => {
    const error = await runLoad({ ...base, baseUrl: "ftp://x", concurrency: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CanaryLoadError);
    expect(error).toMatchObject({ code: "LOAD_BAD_OPTIONS", kind: "usage" });
    expect((error as Error).message).toMatch(/baseUrl: baseUrl must be an http\(s\) URL.*concurrency: concurrency must be at least 1/);
    await expect(runLoad({ ...base, baseUrl: "http://127.0.0.1:9", deadlineSeconds: 0.1 })).rejects.toThrow(
      /deadlineSeconds \(0.1\) must be at least durationSeconds \(0.6\)/,
    );
    const extra = [1, 2, 3].map(() => ({ promptTokens: 10, outputTokens: 10 }));
    await expect(runLoad({ ...base, baseUrl: "http://127.0.0.1:9", extra, maxRequests: 2 })).rejects.toThrow(
      /extra: 3 extra requests do not fit in maxRequests \(2\)/,
    );
  });

  it("says LOAD_UNREACHABLE for a port nothing listens on", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await expect(runLoad({ ...base, baseUrl: `http://127.0.0.1:${port}` })).rejects.toMatchObject({
      code: "LOAD_UNREACHABLE",
      message: expect.stringContaining(`cannot ask the served model: http://127.0.0.1:${port}/v1/models`),
    });
  });

  it("says LOAD_UNREACHABLE when vLLM accepts but does not answer within setupTimeoutMs, and gives the caller's reason when it cancels", async () => {
    const server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    });
    const { port } = server.address() as AddressInfo;
    const url = `http://127.0.0.1:${port}`;
    await expect(runLoad({ ...base, baseUrl: url, setupTimeoutMs: 200 })).rejects.toMatchObject({
      code: "LOAD_UNREACHABLE",
      message: `cannot ask the served model: ${url}/v1/models: no answer within 200 ms`,
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("the canary run was cancelled")), 100);
    await expect(runLoad({ ...base, baseUrl: url, signal: controller.signal })).rejects.toThrow("the canary run was cancelled");
  });

  it("says LOAD_NO_MODEL when /v1/models lists none", async () => {
    const server = createServer((_req, res) =>
      res.writeHead(200, { "content-type": "application/json" }).end('{"object":"list","data":[]}'),
    );
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => new Promise((resolve) => server.close(() => resolve(undefined))));
    const { port } = server.address() as AddressInfo;
    await expect(runLoad({ ...base, baseUrl: `http://127.0.0.1:${port}` })).rejects.toMatchObject({
      code: "LOAD_NO_MODEL",
      message: expect.stringContaining("lists no model"),
    });
  });

  it("says LOAD_CALIBRATION_FAILED with vLLM's own words when the calibration is refused", async () => {
    const vllm = await fake({ behaviour: () => ({ kind: "fail", status: 500, message: "EngineCore encountered an issue" }) });
    const error = await runLoad({ ...base, baseUrl: vllm.url }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "LOAD_CALIBRATION_FAILED", kind: "fault" });
    expect((error as Error).message).toContain("answered 500: EngineCore encountered an issue");
  });
});
