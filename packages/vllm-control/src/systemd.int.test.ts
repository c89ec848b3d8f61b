import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
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
  freePort,
  h200,
  liveProcesses,
  readHost,
} from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { launchCanaryUnit } from "./canary-unit.ts";
import { createProductionService } from "./production-service.ts";
import { runOperatorCommand } from "./shell.ts";
import { type WatchdogReport, armWatchdog } from "./watchdog.ts";
import { switchWhisper } from "./whisper.ts";

const armer = join(import.meta.dirname, "test-fixtures", "armer.ts");

/** systemd-run that records each call (its $XDG_RUNTIME_DIR and argv), then runs the stand-in. */
async function recordingSystemdRun(dir: string) {
  const path = join(dir, "systemd-run");
  const log = join(dir, "systemd-run.calls");
  await writeFile(
    path,
    `#!/bin/sh\nprintf '%s\\n' "XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR" "$@" "@@end" >> '${log}'\nexec '${join(SYSTEMD_STANDINS, "systemd-run")}' "$@"\n`,
    { mode: 0o755 },
  );
  const calls = () =>
    existsSync(log)
      ? readFileSync(log, "utf8")
          .split("@@end\n")
          .filter((c) => c !== "")
          .map((c) => c.split("\n").filter((l) => l !== ""))
      : [];
  return { path, calls };
}

/** Production as a systemd unit of the simulated host (systemd is not PID 1 here: the stand-ins act for it). */
async function systemdHost(unitEnv: Record<string, string> = {}) {
  const dir = await testdir();
  const hostFile = join(dir, "host.json");
  await createHost(hostFile, { gpus: [h200(0)] });
  const port = freePort();
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

  it("restores production from a watchdog in a transient unit of the user's own manager after the run's process group is SIGKILLed", async () => {
    const h = await systemdHost();
    await h.service.start(10_000);
    await h.client.waitUntilHealthy({ deadlineMs: 30_000 });
    const setup = join(h.dir, "setup.json");
    const reportPath = join(h.dir, "gpu_maintenance.watchdog.json");
    const runtimeDir = join(h.dir, "run-user");
    await mkdir(runtimeDir);
    const systemdRun = await recordingSystemdRun(h.dir);
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
        launch: { mode: "user", runtimeDir },
        systemdRun: systemdRun.path,
        canary: { vllmCommand: SIM_VLLM, port: h.port + 1, utilization: 0.4, env: { GPU_CANARY_SIM_HOST: h.hostFile } },
      }),
    );
    // Without $XDG_RUNTIME_DIR of its own, as in a service the system manager started.
    const env = { ...process.env };
    delete env.XDG_RUNTIME_DIR;
    // A process group of its own, so that the whole group can be killed, as stopping its unit would.
    const child = spawn(process.execPath, tsNodeArgs(armer, [setup, "die"]), { stdio: ["ignore", "pipe", "inherit"], env, detached: true });
    onTestFinished(() => void child.kill("SIGKILL"));
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const deadline = Date.now() + 60_000;
    while (!out.includes("ready") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(out).toMatch(/ready \d+ user/);
    expect(await h.service.isActive()).toBe("inactive");
    process.kill(-(child.pid ?? 0), "SIGKILL");
    while (!existsSync(reportPath) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const report = JSON.parse(readFileSync(reportPath, "utf8")) as WatchdogReport;
    expect(report).toMatchObject({ canary_stopped: true, error: null });
    expect(await h.service.isActive()).toBe("active");
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
    // One call, to the user's manager, given its runtime folder: nothing asked of the system manager.
    const calls = systemdRun.calls();
    expect(calls).toHaveLength(1);
    expect(calls[0]?.slice(0, 11)).toEqual([
      `XDG_RUNTIME_DIR=${runtimeDir}`,
      "--user",
      "--unit",
      "gpu-canary-watchdog-test-run",
      "--collect",
      "--quiet",
      // What the watchdog restarts must outlive it; the operator's commands get the run's PATH.
      "-p",
      "KillMode=process",
      `--setenv=PATH=${process.env.PATH ?? ""}`,
      "--",
      process.execPath,
    ]);
    expect(readFileSync(join(h.dir, "user", "gpu-canary-watchdog-test-run.json"), "utf8")).toContain("watchdog-main");
    expect(existsSync(join(h.dir, "gpu-canary-watchdog-test-run.json"))).toBe(false);
  }, 120_000);
});

describe("a user manager that refuses the watchdog", () => {
  it("is WATCHDOG_FAILED with systemd-run's own words and the fix, and leaves no arm file", async () => {
    const dir = await testdir();
    const systemdRun = join(dir, "systemd-run");
    await writeFile(systemdRun, "#!/bin/sh\necho 'Failed to connect to bus: No such file or directory' >&2\nexit 1\n", { mode: 0o755 });
    const armFile = join(dir, "gpu_maintenance.watchdog.arm.json");
    const armed = armWatchdog({
      runId: "refused",
      deadline: new Date(Date.now() + 60_000),
      restore: {
        quiesce: "stop",
        manager: { kind: "systemd", unit: "vllm.service" },
        vllmUrl: "http://127.0.0.1:1",
        port: 1,
        vllmProcess: "vllm",
        gpuIndex: 0,
        serveTimeoutMs: 1000,
      },
      armFile,
      reportPath: join(dir, "gpu_maintenance.watchdog.json"),
      launch: { mode: "user", runtimeDir: join(dir, "run-user") },
      systemdRun,
    });
    await expect(armed).rejects.toMatchObject({
      code: "WATCHDOG_FAILED",
      message: expect.stringContaining("systemd-run --user could not start the restore watchdog (exit 1): Failed to connect to bus"),
      hint: expect.stringContaining("loginctl enable-linger"),
    });
    expect(existsSync(armFile)).toBe(false);
  });
});

describe("the canary as a transient unit", () => {
  it("runs in the user's own manager with a hard runtime cap, and stops with systemctl --user", async () => {
    const h = await systemdHost();
    const runtimeDir = join(h.dir, "run-user");
    await mkdir(runtimeDir);
    const systemdRun = await recordingSystemdRun(h.dir);
    const tools = {
      runtimeDir,
      systemdRun: systemdRun.path,
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
    expect(systemdRun.calls()[0]?.slice(0, 4)).toEqual([`XDG_RUNTIME_DIR=${runtimeDir}`, "--user", "--unit", "gpu-canary-canary-t1"]);
    expect(existsSync(join(h.dir, "user", "gpu-canary-canary-t1.json"))).toBe(true);
    await canary.stop();
    expect(canary.hasExited()).toBe(true);
    // Stopped for real (the user's manager, not the system's): its memory is free again.
    expect(liveProcesses(readHost(h.hostFile))).toEqual([]);
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
