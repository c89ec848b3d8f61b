import { spawn } from "node:child_process";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "./free-port.ts";
import { createHost, h200, readHost, registerProcess } from "./host-state.ts";
import { SIM_VLLM } from "./index.ts";
import { buildSimVllm } from "./vllm-server.ts";

const apps: { close: () => Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function listen(options: Parameters<typeof buildSimVllm>[0]) {
  const app = buildSimVllm(options);
  apps.push(app);
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  return address;
}

describe("the simulated vLLM", () => {
  it("serves the sleep endpoints only with sleep mode on, as vLLM with VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode", async () => {
    const off = await listen({ model: "m", gpuMemoryUtilization: 0.5, sleepMode: false });
    for (const [method, path] of [
      ["POST", "/sleep?level=1"],
      ["POST", "/wake_up"],
      ["GET", "/is_sleeping"],
    ] as const)
      expect((await fetch(`${off}${path}`, { method })).status).toBe(404);
    const on = await listen({ model: "m", gpuMemoryUtilization: 0.5, sleepMode: true });
    expect((await fetch(`${on}/sleep?level=1`, { method: "POST" })).status).toBe(200);
    expect(await (await fetch(`${on}/is_sleeping`)).json()).toEqual({ is_sleeping: true });
  });

  it("answers the official openai client (v6), plain and streamed chat", async () => {
    const url = await listen({ model: "/models/llm/current", servedModelName: "llm", gpuMemoryUtilization: 0.75, tokenLatencyMs: 1 });
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: "unused" });
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual(["llm"]);
    const plain = await client.chat.completions.create({
      model: "llm",
      messages: [{ role: "user", content: "hi" }],
      max_completion_tokens: 4,
    });
    expect(plain.choices[0]?.message.content).toBe("The canary sings while");
    const stream = await client.chat.completions.create({
      model: "llm",
      messages: [{ role: "user", content: "hi" }],
      max_completion_tokens: 3,
      stream: true,
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe("The canary sings");
    const completion = await client.completions.create({ model: "llm", prompt: "x", max_tokens: 2 });
    expect(completion.choices[0]?.text).toBe("The canary");
  });

  it("exports vllm:cache_config_info with the gpu_memory_utilization label", async () => {
    const url = await listen({ model: "m", gpuMemoryUtilization: 0.75 });
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(/^vllm:cache_config_info\{.*gpu_memory_utilization="0\.75".*\} 1\.0$/m);
  });

  it("runs as a process that takes GPU memory from the simulated host and gives it back", async () => {
    const dir = await testdir();
    const host = join(dir, "host.json");
    await createHost(host, { gpus: [h200(0)] });
    const port = freePort();
    const child = spawn(SIM_VLLM, ["--port", String(port), "--model", "/m", "--gpu-memory-utilization", "0.5"], {
      env: { ...process.env, GPU_CANARY_SIM_HOST: host, CUDA_VISIBLE_DEVICES: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const deadline = Date.now() + 30_000;
    while (!out.includes("Starting vLLM API server") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(readHost(host).processes).toEqual([
      { gpu_index: 0, pid: child.pid, name: "VLLM::EngineCore", used_memory_mib: Math.ceil(143148 * 0.5) },
    ]);
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(readHost(host).processes).toEqual([]);
  }, 40_000);

  it("dies mid-test with CUDA's out-of-memory text when asked to", async () => {
    const port = freePort();
    const child = spawn(SIM_VLLM, ["--port", String(port), "--gpu-memory-utilization", "0.5"], {
      env: { ...process.env, SIM_FAIL: "crash-mid-test", SIM_CRASH_AFTER: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: "unused", maxRetries: 0 });
    for (let i = 0; i < 200; i += 1) {
      try {
        await client.completions.create({ model: "facebook/opt-125m", prompt: "x", max_tokens: 1 });
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    expect(await exited).toBe(1);
    expect(err).toContain("torch.OutOfMemoryError: CUDA out of memory.");
  }, 40_000);

  it("refuses to start with vLLM's own error text when the GPU lacks free memory", async () => {
    const dir = await testdir();
    const host = join(dir, "host.json");
    await createHost(host, {
      gpus: [h200(0)],
      processes: [{ gpu_index: 0, pid: process.pid, name: "VLLM::EngineCore", used_memory_mib: 120_000 }],
    });
    const child = spawn(SIM_VLLM, ["--port", "1", "--gpu-memory-utilization", "0.9"], {
      env: { ...process.env, GPU_CANARY_SIM_HOST: host },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    expect(code).toBe(1);
    expect(err).toMatch(
      /^ValueError: Free memory on device cuda:0 \(22\.61\/139\.79 GiB\) on startup is less than desired GPU memory utilization \(0\.9, 125\.81 GiB\)\. Decrease GPU memory utilization or reduce GPU memory used by other processes\.$/m,
    );
  }, 40_000);

  it("aborts its start with vLLM's assertion when another process gives memory back while it profiles (vllm-project/vllm#56830)", async () => {
    const dir = await testdir();
    const host = join(dir, "host.json");
    // A co-tenant (this test's process) holding a Whisper's warm-up peak.
    const peak = { gpu_index: 0, pid: process.pid, name: "whisper-server (medium)", used_memory_mib: 5888 };
    await createHost(host, { gpus: [h200(0)], processes: [peak] });
    const child = spawn(SIM_VLLM, ["--port", "1", "--gpu-memory-utilization", "0.5"], {
      env: { ...process.env, GPU_CANARY_SIM_HOST: host, SIM_STARTUP_DELAY_MS: "3000" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let err = "";
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    // Once it took its memory (its snapshot is behind it), the co-tenant gives its peak back.
    while (!readHost(host).processes.some((p) => p.pid === child.pid)) await new Promise((r) => setTimeout(r, 50));
    await registerProcess(host, { ...peak, used_memory_mib: 5120 });
    expect(await exited).toBe(1);
    expect(err).toMatch(
      /^AssertionError: Error in memory profiling\. Initial free memory [\d.]+ GiB, current free memory [\d.]+ GiB\. This happens when other processes sharing the same container release GPU memory while vLLM is profiling during initialization\./m,
    );
    // It gave its own memory back.
    expect(readHost(host).processes.map((p) => p.pid)).toEqual([process.pid]);
  }, 40_000);
});
