import { spawn } from "node:child_process";
import { join } from "node:path";
import { createGpuProbe } from "@gpu-canary/gpu-probe";
import { testdir } from "@gpu-canary/testing";
import { createVllmClient } from "@gpu-canary/vllm-client";
import { NVIDIA_SMI_STANDIN, SIM_VLLM, createHost, freePort, h200, liveProcesses, readHost, registerProcess } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { createProductionService } from "./production-service.ts";
import { restoreProduction } from "./restore.ts";
import { runOperatorCommand } from "./shell.ts";

async function production() {
  const dir = await testdir();
  const hostFile = join(dir, "host.json");
  await createHost(hostFile, { gpus: [h200(0)] });
  const port = freePort();
  const env = { GPU_CANARY_SIM_HOST: hostFile, SIM_SLEEP_RESIDUE_MIB: "1500" };
  // Started as a sleep-mode production is: dev mode and --enable-sleep-mode.
  const startCommand = `VLLM_SERVER_DEV_MODE=1 setsid ${SIM_VLLM} --port ${port} --model /m --gpu-memory-utilization 0.5 --enable-sleep-mode > ${dir}/prod.log 2>&1 < /dev/null & echo $! > ${dir}/prod.pid`;
  const stopCommand = `kill -TERM "$(cat ${dir}/prod.pid)"`;
  onTestFinished(async () => {
    await runOperatorCommand(`kill -KILL "$(cat ${dir}/prod.pid)" 2>/dev/null; true`, { timeoutMs: 5000 });
  });
  const probe = createGpuProbe({ executable: NVIDIA_SMI_STANDIN, env: { GPU_CANARY_SIM_HOST: hostFile } });
  const service = createProductionService({
    manager: { kind: "command", startCommand, stopCommand },
    port,
    vllmProcess: "vllm",
    gpuIndex: 0,
    probe,
    env,
  });
  const client = createVllmClient({ baseUrl: `http://127.0.0.1:${port}` });
  return { dir, hostFile, port, env, service, client, startCommand, stopCommand };
}

describe("production's service with the command manager", () => {
  it("starts, tells it is active, stops until the port closes and the GPU memory is back", async () => {
    const p = await production();
    expect(await p.service.isActive()).toBe("inactive");
    await p.service.start(10_000);
    await p.client.waitUntilHealthy({ deadlineMs: 30_000 });
    expect(await p.service.isActive()).toBe("active");
    expect((await p.service.processes()).length).toBeGreaterThan(0);
    expect((await p.service.gpuHolders()).map((h) => h.name)).toEqual(["VLLM::EngineCore"]);
    const { seconds } = await p.service.stop(20_000);
    expect(seconds).toBeGreaterThan(0);
    expect(await p.service.isActive()).toBe("inactive");
    expect(liveProcesses(readHost(p.hostFile))).toEqual([]);
  }, 60_000);

  it("refuses to call production down while an orphaned engine still holds its GPU memory", async () => {
    const p = await production();
    await p.service.start(10_000);
    await p.client.waitUntilHealthy({ deadlineMs: 30_000 });
    const orphan = spawn("sleep", ["30"], { stdio: "ignore" });
    onTestFinished(() => void orphan.kill("SIGKILL"));
    await registerProcess(p.hostFile, { gpu_index: 0, pid: orphan.pid ?? 0, name: "VLLM::EngineCore", used_memory_mib: 30_000 });
    await expect(p.service.stop(1500)).rejects.toMatchObject({
      code: "PRODUCTION_STOP_FAILED",
      message: expect.stringContaining(`PID ${orphan.pid}`),
    });
  }, 60_000);

  it("puts production to sleep, leaving a residue, and wakes it until it serves", async () => {
    const p = await production();
    await p.service.start(10_000);
    await p.client.waitUntilHealthy({ deadlineMs: 30_000 });
    await p.client.sleep(1);
    expect(liveProcesses(readHost(p.hostFile)).map((x) => x.used_memory_mib)).toEqual([1500]);
    const restored = await restoreProduction({
      quiesce: "sleep",
      manager: { kind: "command" },
      vllmUrl: `http://127.0.0.1:${p.port}`,
      port: p.port,
      vllmProcess: "vllm",
      gpuIndex: 0,
      serveTimeoutMs: 10_000,
    });
    expect(restored.seconds).toBeGreaterThan(0);
    expect(await p.client.isSleeping()).toBe(false);
    expect(liveProcesses(readHost(p.hostFile)).map((x) => x.used_memory_mib)).toEqual([Math.ceil(143148 * 0.5)]);
  }, 60_000);

  it("says plainly when the commands are not configured or fail", async () => {
    const missing = createProductionService({ manager: { kind: "command" }, port: 1, vllmProcess: "vllm", gpuIndex: 0 });
    await expect(missing.stop(1000)).rejects.toMatchObject({ code: "PRODUCTION_NOT_CONFIGURED", kind: "usage" });
    await expect(missing.start(1000)).rejects.toMatchObject({ code: "PRODUCTION_NOT_CONFIGURED" });
    const failing = createProductionService({
      manager: { kind: "command", stopCommand: "echo no such container >&2; exit 3", startCommand: "exit 4" },
      port: 1,
      vllmProcess: "vllm",
      gpuIndex: 0,
    });
    await expect(failing.stop(1000)).rejects.toMatchObject({
      code: "PRODUCTION_STOP_FAILED",
      message: expect.stringContaining("no such container"),
    });
    await expect(failing.start(1000)).rejects.toMatchObject({
      code: "PRODUCTION_START_FAILED",
      message: expect.stringContaining("exited with 4"),
    });
  });
});
