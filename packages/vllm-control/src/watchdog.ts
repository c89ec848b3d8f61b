import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createProcessInspector, readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import { rm } from "node:fs/promises";
import * as z from "zod";
import { ControlError } from "./errors.ts";
import type { RestorePlan } from "./restore.ts";
import { type WatchdogLaunch, chooseWatchdogLaunch, hostLaunchFacts } from "./watchdog-launch.ts";

/** The arm file the armer writes and the watchdog reads on every tick. */
export const armFileSchema = z.object({
  run_id: z.string(),
  armer_pid: z.number().int().positive(),
  armer_start_token: z.string().nullable(),
  deadline_at: z.string(),
  canary_pgid: z.number().int().nullable(),
  disarmed: z.boolean(),
  report_path: z.string(),
  /** this run's own report, kept after later runs' (the report path holds the latest) */
  run_report_path: z.string().nullable().optional(),
  /** how long production's start takes (the run's estimate): a start in progress is waited for this long, plus a margin */
  restore_estimate_seconds: z.number().nonnegative().nullable().optional(),
  /** the run issued production's start then: a watchdog firing meanwhile waits for it instead of issuing a second */
  restore_started_at: z.string().nullable().optional(),
  /** Whisper switched for the canary: the watchdog switches it back, and waits for its memory to be steady, before it restores production */
  whisper: z
    .object({
      at: z.string(),
      back_to: z.string(),
      stop_command: z.string(),
      start_command: z.string(),
      process_match: z.string(),
      steady_timeout_seconds: z.number().positive().optional(),
      steady_poll_ms: z.number().int().positive().optional(),
    })
    .nullable()
    .optional(),
  restore: z.custom<RestorePlan>((value) => typeof value === "object" && value !== null),
});
export type ArmFile = z.infer<typeof armFileSchema>;

/** The watchdog's report beside the lock (gpu_maintenance.watchdog.json). */
export interface WatchdogReport {
  run_id: string;
  fired_at: string;
  reason: string;
  armer_killed: boolean;
  canary_stopped: boolean;
  production_serving_at: string | null;
  /** production already served when it fired (the run had restored it): it was left alone */
  production_was_serving: boolean;
  restore_seconds: number | null;
  /** Whisper switched back to production's size (null: it had not been switched) */
  whisper_restored: boolean | null;
  /**
   * The wait for the Whisper it started to hold its memory steady, before production's start:
   * nvidia-smi's readings (MiB, null when no Whisper showed) and how long it took (null when it did
   * not end steady); `steady` false when the timeout passed first (the error says so; production is
   * started all the same). Null: Whisper was not switched back, its commands failed, or the restore
   * plan names no nvidia-smi to read it with.
   */
  whisper_steady?: { steady: boolean; readings_mib: (number | null)[]; seconds: number | null } | null;
  error: string | null;
}

/** What the watchdog needs to switch Whisper back: plain data, like the restore plan. */
export interface WhisperBack {
  at: string;
  back_to: string;
  stop_command: string;
  start_command: string;
  process_match: string;
  /** KLR_WHISPER_STEADY_TIMEOUT: how long the Whisper switched back may take to hold its memory steady (default 20 s) */
  steady_timeout_seconds?: number;
  /** between two nvidia-smi readings of it (default 1 s) */
  steady_poll_ms?: number;
}

export interface ArmOptions {
  runId: string;
  /** the watchdog's deadline: the run's worst case + 10 s */
  deadline: Date;
  restore: RestorePlan;
  /** e.g. $KLR_HOME/.kloros/locks/gpu_maintenance.watchdog.arm.json */
  armFile: string;
  /** $KLR_HOME/.kloros/locks/gpu_maintenance.watchdog.json */
  reportPath: string;
  /** where this run's own report is kept (default: only reportPath) */
  runReportPath?: string;
  /** production's expected start time: how long a start in progress is waited for before the watchdog acts */
  restoreEstimateSeconds?: number;
  /** false: always a detached process (tests, the simulated host); else as `launch` or the rule says */
  useSystemdRun?: boolean;
  /** where it runs (default: chooseWatchdogLaunch on this host's facts) */
  launch?: WatchdogLaunch;
  systemdRun?: string;
}

export interface Watchdog {
  /** where it runs: a unit of the system or the user's manager, or a detached process */
  readonly mode: WatchdogLaunch["mode"];
  readonly pid: number | null;
  readonly unit: string | null;
  /** tell the watchdog which process group to stop if it fires */
  setCanary(pgid: number | null): Promise<void>;
  /** Whisper is being switched (null: it is back): should the watchdog fire, it switches Whisper back first */
  setWhisper(whisper: WhisperBack | null): Promise<void>;
  /** the run is issuing production's start: should the watchdog fire meanwhile, it waits for that start */
  restoring(): Promise<void>;
  /** the run restored production itself: the watchdog exits without acting */
  disarm(): Promise<void>;
}

function entryArgs(armFile: string): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".ts")) {
    // On sources (tests, development): the same TypeScript entry through tsx.
    const tsx = createRequire(import.meta.url).resolve("tsx");
    return ["--conditions=@gpu-canary/source", "--import", tsx, join(dirname(here), "watchdog-main.ts"), armFile];
  }
  return [join(dirname(here), "watchdog-main.js"), armFile];
}

/** Where a detached watchdog's output goes (a crash's stack), beside the arm file. */
export function watchdogLogPath(armFile: string): string {
  return `${armFile.replace(/\.arm\.json$/, "")}.log`;
}

/** `systemd-run` for the watchdog; its stderr names what went wrong. */
async function systemdRun(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(file, args, { stdio: ["ignore", "ignore", "pipe"], env });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => {
    child.once("error", (e) => {
      stderr += e.message;
      resolve(-1);
    });
    child.once("close", resolve);
  });
  return { code, stderr: stderr.trim().slice(-2000) };
}

/**
 * Arm the restore watchdog before production is quiesced. It runs apart from the arming
 * process (see WatchdogLaunch) — a transient unit of the user's own manager, of the system manager
 * for root, else a detached process in its own session — watches the armer and the deadline, and
 * restores production if either ends badly.
 */
export async function armWatchdog(options: ArmOptions): Promise<Watchdog> {
  const inspector = createProcessInspector();
  let arm: ArmFile = {
    run_id: options.runId,
    armer_pid: process.pid,
    armer_start_token: inspector.selfToken(),
    deadline_at: options.deadline.toISOString(),
    canary_pgid: null,
    disarmed: false,
    report_path: options.reportPath,
    run_report_path: options.runReportPath ?? null,
    restore_estimate_seconds: options.restoreEstimateSeconds ?? null,
    restore_started_at: null,
    restore: options.restore,
  };
  // It may hold an API key: only the owner reads it.
  await writeJsonAtomic(options.armFile, arm, { mode: 0o600 });
  const args = entryArgs(options.armFile);
  const launch: WatchdogLaunch =
    options.launch ??
    (options.useSystemdRun === false ? { mode: "detached", reason: "asked for" } : chooseWatchdogLaunch(hostLaunchFacts()));
  let pid: number | null = null;
  let unit: string | null = null;
  if (launch.mode === "detached") {
    // Its output (a crash's stack) is worth keeping, but not worth refusing the run for.
    let log: number | null;
    try {
      log = openSync(watchdogLogPath(options.armFile), "w", 0o600);
    } catch {
      log = null;
    }
    try {
      // Its own session (setsid): the armer's process group, terminal or session ending does not reach it.
      const output = log ?? "ignore";
      const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", output, output] });
      child.unref();
      pid = child.pid ?? null;
    } finally {
      if (log !== null) closeSync(log);
    }
    if (pid === null)
      throw new ControlError("WATCHDOG_FAILED", "could not start the restore watchdog process", "production was not touched");
  } else {
    unit = `gpu-canary-watchdog-${options.runId.replace(/[^A-Za-z0-9:_.-]/g, "_")}`;
    const user = launch.mode === "user";
    const started = await systemdRun(
      options.systemdRun ?? "systemd-run",
      [
        ...(user ? ["--user"] : []),
        "--unit",
        unit,
        "--collect",
        "--quiet",
        // A production (or Whisper) its start command leaves running belongs to this unit's cgroup:
        // systemd's default control-group kill would stop it the moment the watchdog exits.
        "-p",
        "KillMode=process",
        // A manager starts units with its own environment, not the caller's: the operator's
        // commands must find what they found in the run (its PATH).
        ...(process.env.PATH ? [`--setenv=PATH=${process.env.PATH}`] : []),
        "--",
        process.execPath,
        ...args,
      ],
      // A service has no $XDG_RUNTIME_DIR of its own: systemd-run --user finds the manager through it.
      user ? { ...process.env, XDG_RUNTIME_DIR: launch.runtimeDir } : process.env,
    );
    if (started.code !== 0) {
      // Nothing watches it: an arm file left behind would only mislead.
      await rm(options.armFile, { force: true });
      throw new ControlError(
        "WATCHDOG_FAILED",
        `systemd-run${user ? " --user" : ""} could not start the restore watchdog (exit ${String(started.code)})${started.stderr ? `: ${started.stderr}` : ""}`,
        user
          ? `the user manager in ${launch.runtimeDir} refused it: check \`systemctl --user status\` and that lingering is on (\`loginctl enable-linger $USER\`); production was not touched`
          : "the system manager refused it; production was not touched",
      );
    }
  }
  return {
    mode: launch.mode,
    pid,
    unit,
    async setCanary(pgid) {
      arm = { ...arm, canary_pgid: pgid };
      await writeJsonAtomic(options.armFile, arm, { mode: 0o600 });
    },
    async setWhisper(whisper) {
      arm = { ...arm, whisper };
      await writeJsonAtomic(options.armFile, arm, { mode: 0o600 });
    },
    async restoring() {
      arm = { ...arm, restore_started_at: new Date().toISOString() };
      await writeJsonAtomic(options.armFile, arm, { mode: 0o600 });
    },
    async disarm() {
      arm = { ...arm, disarmed: true };
      await writeJsonAtomic(options.armFile, arm, { mode: 0o600 });
      // Wait (briefly) for it to notice, then remove the arm file.
      for (let i = 0; i < 40 && pid !== null && inspector.probe(pid).state === "alive"; i += 1) await sleep(25);
      await rm(options.armFile, { force: true });
    },
  };
}

/** Where a running watchdog says who it is (its PID and start token), beside the arm file. */
export function watchdogPidPath(armFile: string): string {
  return `${armFile.replace(/\.arm\.json$/, "")}.pid.json`;
}

const pidFileSchema = z.object({ pid: z.number().int().positive(), start_token: z.string().nullable() });

/** Whether the watchdog of this arm file still runs: a dead one (or one that never said) is not waited for. */
export async function watchdogRunning(armFile: string): Promise<boolean> {
  const result = await readJsonState(watchdogPidPath(armFile), pidFileSchema);
  if (result.status !== "ok") return false;
  const probe = createProcessInspector().probe(result.value.pid);
  if (probe.state !== "alive") return false;
  return result.value.start_token === null || probe.startToken === null || probe.startToken === result.value.start_token;
}

/** Read the arm file; null when it is gone. */
export async function readArmFile(path: string): Promise<ArmFile | null> {
  const result = await readJsonState(path, armFileSchema);
  if (result.status === "unreadable") throw result.error;
  return result.status === "ok" ? result.value : null;
}
