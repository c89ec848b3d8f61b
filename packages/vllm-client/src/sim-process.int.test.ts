import { spawn } from "node:child_process";
import { SIM_VLLM, freePort } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { createVllmClient } from "./client.ts";

describe("the vLLM client against the simulated vLLM process", () => {
  it("waits through a startup that refuses connections, then streams a timed completion", async () => {
    const port = freePort();
    const child = spawn(SIM_VLLM, ["--port", String(port), "--model", "/m", "--gpu-memory-utilization", "0.6"], {
      env: { ...process.env, SIM_STARTUP_DELAY_MS: "800", SIM_TOKEN_LATENCY_MS: "10" },
      stdio: "ignore",
    });
    onTestFinished(() => void child.kill("SIGKILL"));
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${port}` });
    expect((await client.health()).state).toBe("refused");
    const { waitedMs } = await client.waitUntilHealthy({ deadlineMs: 30_000 });
    expect(waitedMs).toBeGreaterThan(0);
    const streamed = await client.streamCompletion({ prompt: "hello", maxTokens: 4, timeoutMs: 5000 });
    expect(streamed.chunks).toBe(4);
    expect(await client.cacheConfig()).toMatchObject({ gpu_memory_utilization: "0.6" });
  }, 40_000);
});
