import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createGpuProbe } from "@gpu-canary/gpu-probe";
import { testdir, tsNodeArgs } from "@gpu-canary/testing";
import { createVllmClient } from "@gpu-canary/vllm-client";
import {
  NVIDIA_SMI_STANDIN,
  SIM_VLLM,
  SIM_WHISPER,
  SYSTEMD_STANDINS,
  createHost,
  defineUnit,
  h200,
  liveProcesses,
  readHost,
} from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { launchCanaryUnit } from "./canary-unit.ts";
import { createProductionService } from "./production-service.ts";
import { runOperatorCommand } from "./shell.ts";
import type { WatchdogReport } from "./watchdog.ts";
import { switchWhisper } from "./whisper.ts";

const armer = join(import.meta.dirname, "test-fixtures", "armer.ts");

/** Production as a systemd unit of the simulated host (systemd is not PID 1 here: the stand-ins act for it). */
async function systemdHost(unitEnv: Record<string, string> = {}) {
  const dir = await testdir();
  const hostFile = join(dir, "host.json");
  await createHost(hostFile, { gpus: [h200(0)] });
  const port = 20000 + Math.floor(Math.random() * 20000);
  // The stand-ins find their state through SIM_SYSTEMD_DIR, and units the host through GPU_CANARY_SIM_HOST.
  process.env.SIM_SYSTEMD_DIR = dir;
  process.env.GPU_CANARY_SIM_HOST = hostFile;
  defineUnit(dir, "vllm.service", {
    exec: [SIM_VLLM, "--port", String(port), "--model", "/m", "--gpu-memory-utilization", "0.5"],
    env: { GPU_CANARY_SIM_HOST: hostFile, ...unitEnv },
  });
  const systemctl = join(SYSTEMD_STANDINS, "systemctl");
  onTestFinished(async () => {
    await runOperatorCommand(`${systemctl} stop vllm.service`, { timeoutMs: 30_000 });
  });
  const probe = createGpuProbe({ executable: NVIDIA_SMI_STANDIN, env: { GPU_CANARY_SIM_HOST: hostFile } });
  const service = createProductionService({
    manager: { kind: "systemd", unit: "vllm.service", systemctl },
    port,
    vllmProcess: "vllm",
    gpuIndex: 0,
    probe,
  });
  return { dir, hostFile, port, service, systemctl, probe, client: createVllmClient({ baseUrl: `http://127.0.0.1:${port}` }) };
}

describe("production under systemd (through the stand-ins)", () => {
  it("starts, stops and reports the unit, waiting until its GPU memory is back", async () => {
    const h = await systemdHost();
    expect(await h.service.isActive()).toBe("inactive");
    await h.service.start(10_000);
    expect(await h.service.isActive()).toBe("active");
    await h.client.waitUntilHealthy({ deadlineMs: 30_000 });
    const mainPid = Number(readFileSync(join(h.dir, "vllm.service.state.json"), "utf8").match(/"pid":(\d+)/)?.[1]);
    expect((await h.service.processes()).map((p) => p.pid)).toContain(mainPid);
    await h.service.stop(30_000);
    expect(await h.service.isActive()).toBe("inactive");
    expect(liveProcesses(readHost(h.hostFile))).toEqual([]);
  }, 90_000);

  it("tells production's environment: the unit's Environment= while it is down, its process's own while it runs", async () => {
    const h = await systemdHost({ VLLM_USE_V1: "0", HF_HOME: "/srv/hf cache" });
    expect(await h.service.environment()).toEqual({
      env: { GPU_CANARY_SIM_HOST: h.hostFile, VLLM_USE_V1: "0", HF_HOME: "/srv/hf cache" },
      source: "vllm.service's Environment=",
    });
    await h.service.start(10_000);
    await h.client.waitUntilHealthy({ deadlineMs: 30_000 });
    const running = await h.service.environment();
    expect(running?.source).toMatch(/^production's process environment \(PID \d+\)$/);
    expect(running?.env).toMatchObject({ VLLM_USE_V1: "0", HF_HOME: "/srv/hf cache" });
  }, 90_000);

  it("restores production from a watchdog in a transient unit of its own after the run is SIGKILLed", async () => {
    const h = await systemdHost();
    await h.service.start(10_000);
    await h.client.waitUntilHealthy({ deadlineMs: 30_000 });
    const setup = join(h.dir, "setup.json");
    const reportPath = join(h.dir, "gpu_maintenance.watchdog.json");
    const plan = {
      quiesce: "stop",
      manager: { kind: "systemd", unit: "vllm.service", systemctl: h.systemctl },
      vllmUrl: `http://127.0.0.1:${h.port}`,
      port: h.port,
      vllmProcess: "vllm",
      gpuIndex: 0,
      serveTimeoutMs: 30_000,
    };
    await writeFile(
      setup,
      JSON.stringify({
        plan,
        armFile: join(h.dir, "arm.json"),
        reportPath,
        deadlineMs: 120_000,
        systemdRun: join(SYSTEMD_STANDINS, "systemd-run"),
        canary: { vllmCommand: SIM_VLLM, port: h.port + 1, utilization: 0.4, env: { GPU_CANARY_SIM_HOST: h.hostFile } },
      }),
    );
    const child = spawn(process.execPath, tsNodeArgs(armer, [setup, "die"]), { stdio: ["ignore", "pipe", "inherit"] });
    onTestFinished(() => void child.kill("SIGKILL"));
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const deadline = Date.now() + 60_000;
    while (!out.includes("ready") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await h.service.isActive()).toBe("inactive");
    child.kill("SIGKILL");
    while (!existsSync(reportPath) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const report = JSON.parse(readFileSync(reportPath, "utf8")) as WatchdogReport;
    expect(report).toMatchObject({ canary_stopped: true, error: null });
    expect(await h.service.isActive()).toBe("active");
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
    // The watchdog ran as its own transient unit.
    expect(readFileSync(join(h.dir, "gpu-canary-watchdog-test-run.json"), "utf8")).toContain("watchdog-main");
  }, 120_000);
});

describe("the canary as a transient unit", () => {
  it("runs under systemd-run with a hard runtime cap, and stops with systemctl", async () => {
    const h = await systemdHost();
    const tools = {
      systemdRun: join(SYSTEMD_STANDINS, "systemd-run"),
      systemctl: h.systemctl,
      journalctl: join(SYSTEMD_STANDINS, "journalctl"),
    };
    const launch = (port: number, unit: string, runtimeMaxSec: number) =>
      launchCanaryUnit(
        { vllmCommand: SIM_VLLM, modelPath: "/m", port, gpuMemoryUtilization: 0.3, gpuIndex: 0, env: { GPU_CANARY_SIM_HOST: h.hostFile } },
        { unit, runtimeMaxSec, ...tools },
      );
    const canary = await launch(h.port + 1, "gpu-canary-canary-t1", 60);
    const client = createVllmClient({ baseUrl: `http://127.0.0.1:${h.port + 1}` });
    await client.waitUntilHealthy({ deadlineMs: 30_000 });
    expect(canary.pid).toBeGreaterThan(0);
    await canary.stop();
    expect(canary.hasExited()).toBe(true);
    expect(canary.tail()).toContain("Starting vLLM API server");
    const capped = await launch(h.port + 2, "gpu-canary-canary-t2", 2);
    await capped.exited;
    expect(capped.hasExited()).toBe(true);
  }, 90_000);
});

describe("Whisper switching", () => {
  it("stops one size and starts another, waiting until the new footprint settles", async () => {
    const dir = await testdir();
    const hostFile = join(dir, "host.json");
    await createHost(hostFile, { gpus: [h200(0)] });
    const env = { GPU_CANARY_SIM_HOST: hostFile };
    const pidFile = join(dir, "whisper.pid");
    const deps = {
      stopCommand: `kill -TERM "$(cat ${pidFile})"; while kill -0 "$(cat ${pidFile})" 2>/dev/null; do sleep 0.05; done`,
      startCommand: `setsid ${SIM_WHISPER} "$GPU_CANARY_WHISPER_SIZE" > /dev/null 2>&1 < /dev/null & echo $! > ${pidFile}`,
      processMatch: "whisper",
      gpuIndex: 0,
      probe: createGpuProbe({ executable: NVIDIA_SMI_STANDIN, env }),
      env,
    };
    onTestFinished(async () => {
      await runOperatorCommand(`kill -KILL "$(cat ${pidFile})" 2>/dev/null; true`, { timeoutMs: 5000 });
    });
    expect(await switchWhisper(deps, "none", "small", 60_000, { pollMs: 200 })).toMatchObject({ footprintMib: 2048 });
    expect(await switchWhisper(deps, "small", "medium", 60_000, { pollMs: 200 })).toMatchObject({ footprintMib: 5120 });
    expect(liveProcesses(readHost(hostFile)).map((p) => p.name)).toEqual(["whisper-server (medium)"]);
    await expect(switchWhisper({ ...deps, startCommand: "exit 7" }, "medium", "tiny", 5000)).rejects.toMatchObject({
      code: "WHISPER_COMMAND_FAILED",
    });
  }, 180_000);
});
