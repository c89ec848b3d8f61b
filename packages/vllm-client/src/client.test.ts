import { createServer, type Server } from "node:net";
import { createServer as createHttpServer, type IncomingHttpHeaders } from "node:http";
import { buildSimVllm } from "@gpu-canary/vllm-sim";
import { afterEach, describe, expect, it } from "vitest";
import { createVllmClient } from "./client.ts";
import { percentile } from "./stream-timing.ts";

const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

async function sim(options: Partial<Parameters<typeof buildSimVllm>[0]> = {}) {
  const app = buildSimVllm({
    model: "/models/llm/current",
    servedModelName: "llm",
    gpuMemoryUtilization: 0.75,
    tokenLatencyMs: 2,
    ...options,
  });
  closers.push(() => app.close());
  return app.listen({ port: 0, host: "127.0.0.1" });
}

/** A hand-made misbehaving server on loopback. */
async function tcp(onConnection: (socket: import("node:net").Socket) => void): Promise<string> {
  const sockets = new Set<import("node:net").Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(
    () =>
      new Promise((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(resolve);
      }),
  );
  const address = server.address();
  return `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  return typeof address === "object" && address ? address.port : 0;
}

describe("the vLLM client against the simulated vLLM", () => {
  it("reads health, models, version and cache config", async () => {
    const client = createVllmClient({ baseUrl: await sim() });
    expect(await client.health()).toEqual({ state: "healthy" });
    expect(await client.models()).toEqual([{ id: "llm", root: "/models/llm/current", maxModelLen: 32768 }]);
    expect(await client.version()).toBe("0.11.0");
    expect(await client.cacheConfig()).toMatchObject({ gpu_memory_utilization: "0.75", num_gpu_blocks: "8192" });
    expect(await client.servedUtilization()).toBe(0.75);
  });

  it("reads no served utilization from /metrics without a fraction in (0, 1]", async () => {
    const served = async (metrics: string) => {
      const server = createHttpServer((_request, response) => response.end(metrics));
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
      closers.push(() => new Promise((resolve) => server.close(resolve)));
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      return createVllmClient({ baseUrl: `http://127.0.0.1:${port}` }).servedUtilization();
    };
    expect(await served("vllm:num_requests_running 0\n")).toBeNull();
    expect(await served('vllm:cache_config_info{gpu_memory_utilization="None"} 1\n')).toBeNull();
    expect(await served('vllm:cache_config_info{gpu_memory_utilization="1.5"} 1\n')).toBeNull();
    expect(await served('vllm:cache_config_info{gpu_memory_utilization="0.9"} 1\n')).toBe(0.9);
  });

  it("completes plainly and streamed, timing TTFT, inter-token latency and end to end", async () => {
    const client = createVllmClient({ baseUrl: await sim({ tokenLatencyMs: 15 }) });
    expect(await client.completion({ prompt: "x", maxTokens: 3, timeoutMs: 5000 })).toEqual({
      text: "The canary sings",
      completionTokens: 3,
    });
    const streamed = await client.streamCompletion({ prompt: "x", maxTokens: 5, timeoutMs: 5000 });
    expect(streamed.text).toBe("The canary sings while production");
    expect(streamed.chunks).toBe(5);
    expect(streamed.itlMs).toHaveLength(4);
    expect(streamed.ttftMs).toBeGreaterThan(0);
    expect(streamed.e2eMs).toBeGreaterThanOrEqual((streamed.ttftMs ?? 0) + streamed.itlMs.reduce((a, b) => a + b, 0) - 1);
    const chat = await client.streamChat({ messages: [{ role: "user", content: "hi" }], maxTokens: 2, timeoutMs: 5000 });
    expect(chat.text).toBe("The canary");
    expect((await client.chat({ messages: [{ role: "user", content: "hi" }], maxTokens: 1, timeoutMs: 5000 })).text).toBe("The");
    expect((await client.servesCompletion({ timeoutMs: 5000 })).e2eMs).toBeGreaterThan(0);
  });

  it("names the first served model in every request that names none: vLLM before 0.8 refuses one without", async () => {
    const base = await sim({ requireModel: true });
    const bare = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", max_tokens: 1 }),
    });
    expect(bare.status).toBe(404);
    expect(await bare.json()).toMatchObject({ message: "The model `None` does not exist." });
    const client = createVllmClient({ baseUrl: base });
    expect((await client.servesCompletion({ timeoutMs: 5000 })).e2eMs).toBeGreaterThan(0);
    expect((await client.streamCompletion({ prompt: "x", maxTokens: 2, timeoutMs: 5000 })).text).toBe("The canary");
    expect((await client.chat({ messages: [{ role: "user", content: "hi" }], maxTokens: 1, timeoutMs: 5000 })).text).toBe("The");
    // A model the caller names is sent as it is.
    await expect(client.completion({ prompt: "x", maxTokens: 1, model: "other", timeoutMs: 5000 })).rejects.toMatchObject({ status: 404 });
  });

  it("puts production to sleep and wakes it, as vLLM's sleep-mode endpoints do", async () => {
    const client = createVllmClient({ baseUrl: await sim() });
    await client.sleep(1);
    expect(await client.isSleeping()).toBe(true);
    await expect(client.completion({ prompt: "x", maxTokens: 1, timeoutMs: 2000 })).rejects.toMatchObject({
      code: "VLLM_HTTP_ERROR",
      status: 503,
    });
    await client.wakeUp();
    expect(await client.isSleeping()).toBe(false);
  });

  it("refuses a model the server does not serve with the server's words", async () => {
    const client = createVllmClient({ baseUrl: await sim() });
    await expect(client.completion({ prompt: "x", maxTokens: 1, model: "other", timeoutMs: 2000 })).rejects.toMatchObject({
      code: "VLLM_HTTP_ERROR",
      message: expect.stringContaining("does not exist"),
    });
  });
});

describe("the vLLM client against misbehaving servers", () => {
  it("sees refused connections as 'not there yet'", async () => {
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${await freePort()}` });
    expect((await client.health()).state).toBe("refused");
    await expect(client.models()).rejects.toMatchObject({ code: "VLLM_UNREACHABLE" });
  });

  it("never hangs on a port that accepts but does not answer", async () => {
    const url = await tcp(() => undefined);
    const client = createVllmClient({ baseUrl: url });
    expect(await client.health(200)).toEqual({ state: "timeout" });
    const started = Date.now();
    await expect(client.waitUntilHealthy({ deadlineMs: 400, requestTimeoutMs: 100 })).rejects.toMatchObject({ code: "VLLM_NOT_READY" });
    expect(Date.now() - started).toBeLessThan(5000);
    await expect(client.completion({ prompt: "x", maxTokens: 1, timeoutMs: 200 })).rejects.toMatchObject({ code: "VLLM_TIMEOUT" });
  });

  it("sees a connection hung up at once as 'not there yet'", async () => {
    const client = createVllmClient({ baseUrl: await tcp((socket) => socket.destroy()) });
    expect((await client.health()).state).toBe("refused");
  });

  it("reports 503 on /health as a dead engine and stops waiting", async () => {
    const client = createVllmClient({ baseUrl: await sim({ failure: { engineDead: true } }) });
    expect(await client.health()).toEqual({ state: "engine_dead" });
    await expect(client.waitUntilHealthy({ deadlineMs: 5000 })).rejects.toMatchObject({ code: "VLLM_ENGINE_DEAD" });
  });

  it("notices readiness soon after a starting server begins to listen", async () => {
    const port = await freePort();
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${port}` });
    const app = buildSimVllm({ model: "m", gpuMemoryUtilization: 0.5 });
    closers.push(() => app.close());
    setTimeout(() => void app.listen({ port, host: "127.0.0.1" }), 300);
    const { waitedMs } = await client.waitUntilHealthy({ deadlineMs: 10_000, intervalMs: 20 });
    expect(waitedMs).toBeGreaterThanOrEqual(250);
  });

  it("reports a stream cut before [DONE]", async () => {
    const client = createVllmClient({ baseUrl: await sim({ failure: { dropMidStream: true } }) });
    await expect(client.streamCompletion({ prompt: "x", maxTokens: 5, timeoutMs: 3000 })).rejects.toMatchObject({
      code: "VLLM_UNREACHABLE",
    });
  });

  it("times out a hanging completion at its deadline", async () => {
    const client = createVllmClient({ baseUrl: await sim({ failure: { completionHang: true } }) });
    await expect(client.streamCompletion({ prompt: "x", maxTokens: 5, timeoutMs: 200 })).rejects.toMatchObject({ code: "VLLM_TIMEOUT" });
  });

  it("rejects garbage and non-vLLM JSON as a bad response", async () => {
    const server = createHttpServer((request, response) => {
      response.writeHead(200, { "content-type": "application/json" });
      response.end(request.url === "/version" ? "<html>not json</html>" : JSON.stringify({ hello: "world" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    const address = server.address();
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}` });
    await expect(client.version()).rejects.toMatchObject({ code: "VLLM_BAD_RESPONSE" });
    await expect(client.models()).rejects.toMatchObject({ code: "VLLM_BAD_RESPONSE" });
  });

  it("sends the API key on /v1/* only, as vLLM authenticates nothing else", async () => {
    const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
    const server = createHttpServer((request, response) => {
      seen.push({ url: request.url ?? "", headers: request.headers });
      response.writeHead(200, { "content-type": "application/json" });
      response.end(request.url === "/version" ? '{"version":"0.6.3.post1"}' : '{"object":"list","data":[]}');
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => new Promise((resolve) => server.close(resolve)));
    const address = server.address();
    const client = createVllmClient({
      baseUrl: `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`,
      apiKey: "sk-test",
    });
    await client.version();
    await client.models();
    expect(seen.find((s) => s.url === "/version")?.headers.authorization).toBeUndefined();
    expect(seen.find((s) => s.url === "/v1/models")?.headers.authorization).toBe("Bearer sk-test");
  });

  it("refuses a URL that is not http(s)", () => {
    expect(() => createVllmClient({ baseUrl: "localhost:8000" })).toThrow(expect.objectContaining({ code: "VLLM_BAD_URL" }));
  });
});

describe("percentile", () => {
  it("interpolates like numpy's default", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([10, 20, 30, 40, 50], 95)).toBe(48);
    expect(percentile([], 50)).toBeNull();
  });
});
