import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir, tsNodeArgs, until } from "@gpu-canary/testing";
import { createVllmClient } from "@gpu-canary/vllm-client";
import { NVIDIA_SMI_STANDIN, SIM_VLLM, SIM_WHISPER, createHost, freePort, h200, liveProcesses, readHost } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { groupMembers } from "./procfs.ts";
import { runOperatorCommand } from "./shell.ts";
import type { WatchdogReport, WhisperBack } from "./watchdog.ts";
import { readingsAgree } from "./whisper.ts";

const armer = join(import.meta.dirname, "test-fixtures", "armer.ts");
const port = freePort;

/** A simulated host with production running as a detached sim vLLM, managed by commands. */
async function host(options: { startDelayMs?: number; nvidiaSmi?: boolean } = {}) {
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
    ...(options.nvidiaSmi ? { nvidiaSmi: NVIDIA_SMI_STANDIN } : {}),
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
  const write = (deadlineMs: number, restoreEstimateSeconds?: number, whisper?: WhisperBack) =>
    writeFile(
      setup,
      JSON.stringify({
        plan,
        armFile,
        reportPath,
        deadlineMs,
        restoreEstimateSeconds,
        whisper,
        canary: { vllmCommand: SIM_VLLM, port: canaryPort, utilization: 0.4, env },
      }),
    );
  return { dir, hostFile, env, client, setup, armFile, reportPath, canaryPort, write };
}

/**
 * A Whisper switched by commands, as createSimSite's is (its stop returns once it is gone); its
 * memory moves for `rampMs` after each start, or never holds still.
 */
function whisperCommands(dir: string, rampMs: number | "never") {
  const pidFile = join(dir, "whisper.pid");
  return {
    start_command: `setsid env CUDA_VISIBLE_DEVICES=0 SIM_WHISPER_RAMP_MS=${rampMs} ${SIM_WHISPER} "$GPU_CANARY_WHISPER_SIZE" >> ${dir}/whisper.log 2>&1 < /dev/null & echo $! > ${pidFile}`,
    stop_command: `pid="$(cat ${pidFile})"; kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done`,
    process_match: "whisper",
    cleanup: `kill -KILL "$(cat ${pidFile})" 2>/dev/null; true`,
  };
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

  it.each([
    // Each nvidia-smi stand-in reading takes a good part of a second: a timeout that leaves room for several.
    { ramp: 2000, steady: true, timeout: 15 },
    { ramp: "never" as const, steady: false, timeout: 3 },
  ])(
    "switches Whisper back and starts production only once two nvidia-smi readings of it agree (ramp $ramp ms)",
    async ({ ramp, steady, timeout }) => {
      const h = await host({ nvidiaSmi: true });
      const w = whisperCommands(h.dir, ramp);
      onTestFinished(async () => {
        await runOperatorCommand(w.cleanup, { timeoutMs: 5000 });
      });
      // Whisper runs at the candidate's size (medium) when the run dies; production's is small.
      await runOperatorCommand(w.start_command, { env: { ...h.env, GPU_CANARY_WHISPER_SIZE: "medium" }, timeoutMs: 10_000 });
      // As the run does, the canary starts only beside a steady Whisper.
      if (steady)
        await until(() => readFileSync(join(h.dir, "whisper.log"), "utf8").includes(" steady at "), "the medium Whisper to hold still", {
          timeoutMs: 10_000,
        });
      await h.write(120_000, undefined, {
        at: "medium",
        back_to: "small",
        stop_command: w.stop_command,
        start_command: w.start_command,
        process_match: w.process_match,
        steady_timeout_seconds: timeout,
        steady_poll_ms: 200,
      });
      const run = startArmer(h.setup, "die", { ownGroup: true });
      await run.ready();
      process.kill(-(run.child.pid ?? 0), "SIGKILL");
      await run.exited;
      const report = await until(
        () => existsSync(h.reportPath) && (JSON.parse(readFileSync(h.reportPath, "utf8")) as WatchdogReport),
        "the watchdog's report",
        { timeoutMs: 60_000, pollMs: 100 },
      );
      const whispers = liveProcesses(readHost(h.hostFile)).filter((p) => p.name.startsWith("whisper"));
      expect(whispers.map((p) => p.name)).toEqual(["whisper-server (small)"]);
      expect(report.production_serving_at).not.toBeNull();
      expect(await h.client.servesCompletion({ timeoutMs: 5000 })).toBeTruthy();
      const readings = report.whisper_steady?.readings_mib ?? [];
      if (steady) {
        // Production served only after the Whisper it started said it held still (the log's second
        // "steady at": the first is the medium one; by the report, written once production serves)...
        const log = readFileSync(join(h.dir, "whisper.log"), "utf8");
        const steadyAt = [...log.matchAll(/ steady at (\S+) /g)].map((m) => Date.parse(m[1] ?? ""));
        expect(steadyAt).toHaveLength(2);
        expect(Date.parse(report.production_serving_at ?? "")).toBeGreaterThanOrEqual(steadyAt[1] ?? NaN);
        // ...and once nvidia-smi read it until two readings in a row agreed, the last at small's footprint (2 GiB).
        expect(report).toMatchObject({ whisper_restored: true, whisper_steady: { steady: true }, error: null });
        const [before, last] = readings.slice(-2);
        expect(last).toBe(2048);
        expect(readingsAgree(before ?? NaN, 2048)).toBe(true);
        expect(readings.length).toBeGreaterThan(2);
      } else {
        // Never steady: at the timeout production starts all the same, and the report says what nvidia-smi read.
        expect(report).toMatchObject({
          whisper_restored: true,
          whisper_steady: { steady: false, seconds: null },
          error: expect.stringMatching(
            /^Whisper could not be switched back to small steady: Whisper \(small\) did not hold its GPU memory steady within 3 s/,
          ),
        });
        expect(readings.length).toBeGreaterThanOrEqual(2);
        expect(readings.every((r) => r !== null && r >= 2048)).toBe(true);
      }
    },
    120_000,
  );
});
