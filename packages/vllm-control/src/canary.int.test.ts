import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { testdir, tsNodeArgs, until } from "@gpu-canary/testing";
import { createVllmClient } from "@gpu-canary/vllm-client";
import { SIM_VLLM, createHost, freePort, h200 } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { launchCanary } from "./canary-launcher.ts";
import { portState } from "./ports.ts";
import { groupMembers } from "./procfs.ts";

const port = freePort;

describe("the canary process", () => {
  it("starts on its port in its own group, serves, and stops with nothing left", async () => {
    const dir = await testdir();
    const hostFile = join(dir, "host.json");
    await createHost(hostFile, { gpus: [h200(0), h200(1)] });
    const canaryPort = port();
    const canary = launchCanary({
      vllmCommand: SIM_VLLM,
      modelPath: "/m",
      port: canaryPort,
      gpuMemoryUtilization: 0.8,
      gpuIndex: 1,
      env: { GPU_CANARY_SIM_HOST: hostFile },
    });
    onTestFinished(() => void canary.stop(100).catch(() => undefined));
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${canaryPort}` });
    await client.waitUntilHealthy({ deadlineMs: 30_000 });
    expect(await client.cacheConfig()).toMatchObject({ gpu_memory_utilization: "0.8" });
    const state = await portState(canaryPort);
    expect(state.free).toBe(false);
    expect(!state.free && state.holders.map((h) => h.pid)).toContain(canary.pid);
    expect(await canary.stop(5000)).toEqual({ killed: false });
    expect(groupMembers(canary.pgid)).toEqual([]);
    expect((await portState(canaryPort)).free).toBe(true);
  }, 60_000);

  it("keeps the tail of its output, with vLLM's out-of-memory text when it cannot start", async () => {
    const dir = await testdir();
    const hostFile = join(dir, "host.json");
    await createHost(hostFile, {
      gpus: [h200(0)],
      processes: [{ gpu_index: 0, pid: process.pid, name: "VLLM::EngineCore", used_memory_mib: 100_000 }],
    });
    const canary = launchCanary({
      vllmCommand: SIM_VLLM,
      modelPath: "/m",
      port: port(),
      gpuMemoryUtilization: 0.9,
      gpuIndex: 0,
      env: { GPU_CANARY_SIM_HOST: hostFile },
    });
    expect(await canary.exited).toEqual({ code: 1, signal: null });
    expect(canary.tail()).toContain("is less than desired GPU memory utilization (0.9");
  }, 60_000);

  it("held: vLLM starts only when released, as the same process in the same group", async () => {
    const dir = await testdir();
    const hostFile = join(dir, "host.json");
    await createHost(hostFile, { gpus: [h200(0)] });
    const canaryPort = port();
    const canary = launchCanary(
      {
        vllmCommand: SIM_VLLM,
        modelPath: "/m",
        port: canaryPort,
        gpuMemoryUtilization: 0.5,
        gpuIndex: 0,
        env: { GPU_CANARY_SIM_HOST: hostFile },
      },
      { held: true },
    );
    onTestFinished(() => void canary.stop(100).catch(() => undefined));
    await new Promise((r) => setTimeout(r, 1500));
    // Held: only the waiting shell, nothing on the port.
    expect(readFileSync(`/proc/${canary.pid}/cmdline`, "utf8").split("\0")[0]).toBe("/bin/sh");
    expect(groupMembers(canary.pgid).map((p) => p.pid)).toEqual([canary.pid]);
    expect((await portState(canaryPort)).free).toBe(true);
    canary.release();
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${canaryPort}` });
    await client.waitUntilHealthy({ deadlineMs: 30_000 });
    const state = await portState(canaryPort);
    expect(!state.free && state.holders.map((h) => h.pid)).toContain(canary.pid);
    expect(await canary.stop(5000)).toEqual({ killed: false });
    expect(groupMembers(canary.pgid)).toEqual([]);
  }, 60_000);

  it("held: when the caller is killed before the release, vLLM never starts and the group is gone", async () => {
    const dir = await testdir();
    const hostFile = join(dir, "host.json");
    await createHost(hostFile, { gpus: [h200(0)] });
    const canaryPort = port();
    const caller = spawn(
      process.execPath,
      tsNodeArgs(join(import.meta.dirname, "test-fixtures", "held-launcher.ts"), [String(canaryPort), hostFile]),
      {
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    onTestFinished(() => void caller.kill("SIGKILL"));
    let out = "";
    caller.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const pgid = Number((await until(() => /held (\d+)/.exec(out), "the held canary"))[1]);
    expect(groupMembers(pgid)).toHaveLength(1);
    caller.kill("SIGKILL");
    await until(() => groupMembers(pgid).length === 0, "the held canary to exit with its caller", { timeoutMs: 10_000 });
    await new Promise((r) => setTimeout(r, 500));
    expect((await portState(canaryPort)).free).toBe(true);
  }, 60_000);

  it("SIGKILLs a canary that ignores SIGTERM after the grace period", async () => {
    const canary = launchCanary({
      vllmCommand: `${process.execPath} -e "process.on('SIGTERM',()=>{});setInterval(()=>{},1000)" --`,
      modelPath: "/m",
      port: port(),
      gpuMemoryUtilization: 0.5,
      gpuIndex: 0,
    });
    await new Promise((r) => setTimeout(r, 500));
    expect(await canary.stop(300)).toEqual({ killed: true });
    expect(groupMembers(canary.pgid)).toEqual([]);
  }, 30_000);

  it("names the process that holds a port", async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    onTestFinished(() => void server.close());
    const address = server.address();
    const held = await portState(typeof address === "object" && address ? address.port : 0);
    expect(held.free).toBe(false);
    expect(!held.free && held.description).toContain(`PID ${process.pid}`);
  });
});
