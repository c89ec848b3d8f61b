import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir, tsNodeArgs, until } from "@gpu-canary/testing";
import { createVllmClient } from "@gpu-canary/vllm-client";
import { SIM_VLLM, createHost, freePort, h200, liveProcesses, readHost } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { groupMembers } from "./procfs.ts";
import { runOperatorCommand } from "./shell.ts";
import type { WatchdogReport } from "./watchdog.ts";

const armer = join(import.meta.dirname, "test-fixtures", "armer.ts");
const port = freePort;

/** A simulated host with production running as a detached sim vLLM, managed by commands. */
async function host(options: { startDelayMs?: number } = {}) {
  const dir = await testdir();
  const hostFile = join(dir, "host.json");
  await createHost(hostFile, { gpus: [h200(0)] });
  const prodPort = port();
  const canaryPort = prodPort + 1;
  const env: Record<string, string> = {
    GPU_CANARY_SIM_HOST: hostFile,
    ...(options.startDelayMs ? { SIM_STARTUP_DELAY_MS: String(options.startDelayMs) } : {}),
  };
  const startCommand = `setsid ${SIM_VLLM} --port ${prodPort} --model /models/llm/current --gpu-memory-utilization 0.5 > ${dir}/prod.log 2>&1 < /dev/null & echo $! > ${dir}/prod.pid`;
  const stopCommand = `kill -TERM "$(cat ${dir}/prod.pid)"`;
  const plan = {
    quiesce: "stop" as const,
    manager: { kind: "command" as const, startCommand, stopCommand },
    vllmUrl: `http://127.0.0.1:${prodPort}`,
    port: prodPort,
    vllmProcess: "vllm",
    gpuIndex: 0,
    serveTimeoutMs: 30_000,
    env,
  };
  onTestFinished(async () => {
    await runOperatorCommand(`kill -KILL "$(cat ${dir}/prod.pid)" 2>/dev/null; true`, { timeoutMs: 5000 });
  });
  await runOperatorCommand(startCommand, { env, timeoutMs: 10_000 });
  const client = createVllmClient({ baseUrl: plan.vllmUrl });
  await client.waitUntilHealthy({ deadlineMs: 30_000 });
  const setup = join(dir, "setup.json");
  const armFile = join(dir, "gpu_maintenance.watchdog.arm.json");
  const reportPath = join(dir, "gpu_maintenance.watchdog.json");
  const write = (deadlineMs: number, restoreEstimateSeconds?: number) =>
    writeFile(
      setup,
      JSON.stringify({
        plan,
        armFile,
        reportPath,
        deadlineMs,
        restoreEstimateSeconds,
        canary: { vllmCommand: SIM_VLLM, port: canaryPort, utilization: 0.4, env },
      }),
    );
  return { dir, hostFile, client, setup, armFile, reportPath, canaryPort, write };
}

/** The run in miniature; `ownGroup`: it leads a process group of its own, so the test can kill the whole group. */
function startArmer(setup: string, mode: string, options: { ownGroup?: boolean } = {}) {
  const child = spawn(process.execPath, tsNodeArgs(armer, [setup, mode]), {
    stdio: ["ignore", "pipe", "pipe"],
    detached: options.ownGroup ?? false,
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  onTestFinished(() => void child.kill("SIGKILL"));
  const ready = async () => {
    const deadline = Date.now() + 60_000;
    while (!out.includes("ready") && Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`armer exited: ${err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return Number(/ready (\d+)/.exec(out)?.[1]);
  };
  return { child, ready, exited, output: () => out };
}

describe("the restore watchdog", () => {
  it("brings production back by itself when the run's whole process group is SIGKILLed mid-canary", async () => {
    const h = await host();
    await h.write(120_000);
    const run = startArmer(h.setup, "die", { ownGroup: true });
    const canaryPgid = await run.ready();
    // No user manager here: the watchdog runs detached, in a session of its own.
    expect(run.output()).toMatch(/ready \d+ detached/);
    // Its output goes to a log beside the arm file, not to the run's pipes (which die with the run).
    expect(existsSync(join(h.dir, "gpu_maintenance.watchdog.log"))).toBe(true);
    // Production is down and the canary took its place on the GPU.
    await until(() => readHost(h.hostFile).processes.some((p) => p.used_memory_mib === Math.ceil(143148 * 0.4)), "the canary on the GPU", {
      timeoutMs: 30_000,
      pollMs: 100,
    });
    expect(readHost(h.hostFile).processes.map((p) => p.used_memory_mib)).toEqual([Math.ceil(143148 * 0.4)]);
    // As a terminal's hangup or a killed unit would: everything in the run's group goes at once.
    process.kill(-(run.child.pid ?? 0), "SIGKILL");
    await run.exited;
    const report = await until(
      () => existsSync(h.reportPath) && (JSON.parse(readFileSync(h.reportPath, "utf8")) as WatchdogReport),
      "the watchdog's report",
      { timeoutMs: 60_000, pollMs: 100 },
    );
    expect(report).toMatchObject({
      run_id: "test-run",
      canary_stopped: true,
      armer_killed: false,
      error: null,
      reason: expect.stringContaining("died"),
    });
    expect(report.production_serving_at).not.toBeNull();
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
    expect(existsSync(h.armFile)).toBe(false);
    // The canary's group is gone and production holds the GPU again.
    // (kill(-pgid, 0) would still answer for zombies waiting for PID 1 to reap them.)
    expect(groupMembers(canaryPgid)).toEqual([]);
    // What nvidia-smi shows: the dead canary's memory is free again.
    expect(liveProcesses(readHost(h.hostFile)).map((p) => p.used_memory_mib)).toEqual([Math.ceil(143148 * 0.5)]);
  }, 120_000);

  it("kills a run that outlives its deadline, then restores production", async () => {
    const h = await host();
    await h.write(4000);
    const run = startArmer(h.setup, "deadline");
    await run.ready();
    const exit = await run.exited;
    expect(exit.signal).toBe("SIGKILL");
    const report = await until(
      () => existsSync(h.reportPath) && (JSON.parse(readFileSync(h.reportPath, "utf8")) as WatchdogReport),
      "the watchdog's report",
      { timeoutMs: 60_000, pollMs: 100 },
    );
    expect(report).toMatchObject({ armer_killed: true, canary_stopped: true, error: null, reason: expect.stringContaining("deadline") });
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
  }, 120_000);

  it("does nothing once the run restored production itself and disarmed it", async () => {
    const h = await host();
    await h.write(120_000);
    const run = startArmer(h.setup, "disarm");
    await run.ready();
    const exit = await run.exited;
    expect(exit.code).toBe(0);
    expect(run.output()).toContain("restored");
    expect(run.output()).toMatch(/ttft \d+\.\d ms/);
    await new Promise((r) => setTimeout(r, 500));
    expect(existsSync(h.reportPath)).toBe(false);
    expect(existsSync(h.armFile)).toBe(false);
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
  }, 120_000);

  it("leaves a production that already serves alone when it fires: no second start", async () => {
    const h = await host();
    await h.write(120_000);
    const run = startArmer(h.setup, "restore-then-hang");
    await run.ready();
    await until(() => run.output().includes("restored"), "the run to restore production", { timeoutMs: 60_000 });
    const pid = readFileSync(join(h.dir, "prod.pid"), "utf8");
    run.child.kill("SIGKILL");
    const report = await until(
      () => existsSync(h.reportPath) && (JSON.parse(readFileSync(h.reportPath, "utf8")) as WatchdogReport),
      "the watchdog's report",
      { timeoutMs: 60_000, pollMs: 100 },
    );
    expect(report).toMatchObject({ production_was_serving: true, error: null, restore_seconds: 0 });
    expect(report.production_serving_at).not.toBeNull();
    // The production that served is the one that still serves: the start command never ran again.
    expect(readFileSync(join(h.dir, "prod.pid"), "utf8")).toBe(pid);
    expect(liveProcesses(readHost(h.hostFile)).map((p) => p.used_memory_mib)).toEqual([Math.ceil(143148 * 0.5)]);
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
  }, 120_000);

  it("passing its deadline while the run's production start is under way, it waits for that start instead of killing the run", async () => {
    const h = await host({ startDelayMs: 4000 });
    // The deadline passes 1.5 s in, mid-start; the start takes ~4 s, within its estimate of 5 s.
    await h.write(1500, 5);
    const run = startArmer(h.setup, "slow-restore");
    await run.ready();
    const exit = await run.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(run.output()).toContain("restored");
    await new Promise((r) => setTimeout(r, 500));
    expect(existsSync(h.reportPath)).toBe(false);
    expect(existsSync(h.armFile)).toBe(false);
    expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
  }, 120_000);

  it("when the run dies mid-start, it waits for that start to serve and issues no second one", async () => {
    const h = await host({ startDelayMs: 3000 });
    await h.write(120_000, 10);
    const run = startArmer(h.setup, "die-while-restoring");
    await run.ready();
    await until(() => run.output().includes("starting"), "the run to issue production's start", { timeoutMs: 30_000 });
    const pid = await until(() => readFileSync(join(h.dir, "prod.pid"), "utf8").trim(), "the new production's PID", { timeoutMs: 5000 });
    expect((await run.exited).signal).toBe("SIGKILL");
    const report = await until(
      () => existsSync(h.reportPath) && (JSON.parse(readFileSync(h.reportPath, "utf8")) as WatchdogReport),
      "the watchdog's report",
      { timeoutMs: 60_000, pollMs: 100 },
    );
    expect(report).toMatchObject({ production_was_serving: true, restore_seconds: 0, error: null });
    expect(readFileSync(join(h.dir, "prod.pid"), "utf8").trim()).toBe(pid);
    expect(liveProcesses(readHost(h.hostFile)).map((p) => p.used_memory_mib)).toEqual([Math.ceil(143148 * 0.5)]);
  }, 120_000);
});
