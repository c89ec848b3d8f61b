import { spawn } from "node:child_process";
import { GpuCanaryError, isGpuCanaryError, signalExitCode } from "@gpu-canary/errors";
import type { GpuLockRecord, GpuLockStatus } from "@gpu-canary/gpu-lock";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, humanDuration, usageError } from "../output.ts";
import { gpuLockFor, loadSettings } from "../settings.ts";

function statusJson(status: GpuLockStatus, path: string) {
  return {
    held: status.held,
    stale: status.stale,
    holder: status.holder,
    state: status.state,
    alive: status.alive,
    awaits_recovery: status.awaitsRecovery,
    reason: status.reason,
    age_seconds: status.ageSeconds,
    expires_in_seconds: status.expiresInSeconds,
    hint: status.hint,
    path,
  };
}

function holderLine(holder: GpuLockRecord): string {
  const parts = [`PID ${holder.pid} on ${holder.host}`, `owner ${holder.owner}`];
  if (holder.run_id) parts.push(`run ${holder.run_id}`);
  if (holder.purpose) parts.push(`purpose ${holder.purpose}`);
  parts.push(`generation ${holder.generation ?? 0}`);
  if (holder.phase) parts.push(`phase ${holder.phase}`);
  return parts.join(", ");
}

export async function runLockStatus(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const status = await (await gpuLockFor(settings, io, "gpu-canary lock status")).status();
  answer(io, options, statusJson(status, settings.layout.gpuLock), () => {
    switch (status.state) {
      case "free":
        return "GPU lock: free";
      case "unreadable":
        return `GPU lock: UNREADABLE (${settings.layout.gpuLock}): it ${status.reason}\nNobody can take the lock until it is dealt with.\nFix: ${status.hint ?? ""}`;
      case "held":
      case "stale": {
        const holder = status.holder as GpuLockRecord;
        const age = status.ageSeconds === null ? "" : `, for ${humanDuration(Math.max(0, status.ageSeconds))}`;
        const lines = [`GPU lock: ${status.state === "held" ? "held" : "STALE"} by ${holderLine(holder)}${age}`, `Why: ${status.reason}`];
        if (status.expiresInSeconds !== null && status.state === "held")
          lines.push(
            `Lease: ${status.expiresInSeconds > 0 ? `expires in ${humanDuration(status.expiresInSeconds)} unless renewed` : "expired"}`,
          );
        if (status.awaitsRecovery)
          lines.push(
            "A crashed run awaits recovery: production may be down. Run `gpu-canary recover` (or `gpu-canary lock release --force`).",
          );
        else if (status.state === "stale") lines.push("Release it with `gpu-canary lock release`.");
        return lines.join("\n");
      }
    }
  });
  return 0;
}

export async function runLockRelease(options: GlobalOptions & { force?: boolean; reason?: string }, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const lock = await gpuLockFor(settings, io, "gpu-canary lock release");
  if (options.force) {
    const result = await lock.forceRelease(options.reason ?? "forced from the command line");
    if (result.awaitedRecovery) {
      io.stderr(
        "WARNING: the evicted lock belonged to a crashed run that had quiesced production: production may be down and its downtime is not charged. Check `systemctl status` of the vLLM service and the budget.\n",
      );
    } else if (result.wasLive) {
      io.stderr(`WARNING: the evicted holder (PID ${result.evicted?.pid ?? "?"}) was alive; it loses the lock at its next check.\n`);
    }
    const moved = result.movedAside;
    const json = {
      released: result.evicted !== null || moved !== null,
      forced: true,
      evicted: result.evicted,
      moved_aside: moved,
      generation: result.generation,
    };
    answer(io, options, json, () => {
      if (moved) return `Moved the unreadable GPU lock (it ${moved.reason}) aside to ${moved.path}; next generation ${result.generation}`;
      return result.evicted
        ? `Force-released the GPU lock of ${holderLine(result.evicted)}; next generation ${result.generation}`
        : "The GPU lock was free; nothing to release";
    });
    return 0;
  }
  const result = await lock.releaseStale();
  answer(io, options, { released: result.released === "stale", forced: false, evicted: result.evicted, reason: result.reason }, () =>
    result.released === "free" ? "The GPU lock is free; nothing to release" : `Released the stale GPU lock (${result.reason})`,
  );
  return 0;
}

export interface LockRunOptions extends GlobalOptions {
  wait?: string;
  conflictExitCode?: string;
}

function parseWait(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value < 0)
    throw usageError(
      `--wait: expected a number of seconds, 0 or more, got ${JSON.stringify(text)}`,
      "gpu-canary lock run --wait 60 -- CMD …",
    );
  return value;
}

function parseExitCode(text: string | undefined): number {
  if (text === undefined) return 3;
  const value = Number(text);
  if (!/^\d{1,3}$/.test(text) || value > 255)
    throw usageError(
      `--conflict-exit-code: expected an exit code 0-255, got ${JSON.stringify(text)}`,
      "gpu-canary lock run --conflict-exit-code 75 -- CMD …",
    );
  return value;
}

/**
 * Like flock(1): run a command holding the GPU lock; its exit code passes through. Unlike flock(1),
 * the command does not outlive the wrapper: SIGKILLed, it takes the command along (where setpriv is).
 */
export async function runLockRun(command: string[], options: LockRunOptions, io: Io): Promise<number> {
  const waitSeconds = parseWait(options.wait);
  const conflictCode = parseExitCode(options.conflictExitCode);
  const [file, ...args] = command;
  if (file === undefined) throw usageError("lock run: expected a command after --", "gpu-canary lock run -- nvidia-smi");
  const settings = loadSettings(io);
  // Looked up before the lock is taken: a missing command holds nothing, and once the lock is held
  // nothing is awaited before the command starts (a signal there would find no command to pass to).
  const { findExecutable } = await import("@gpu-canary/vllm-control");
  if (findExecutable(file, process.env) === null) {
    io.stderr(`gpu-canary lock run: ${file}: command not found\n`);
    return 127;
  }
  // The command dies with this process (PR_SET_PDEATHSIG, set by util-linux's setpriv): a wrapper
  // killed outright must not leave its command running on a lock that `lock release` then frees as stale.
  const setpriv = findExecutable("setpriv", process.env);
  const lock = await gpuLockFor(settings, io, "gpu-canary lock run");
  // One subscription for the whole run, so that no signal falls between waiting and running:
  // before the command starts a signal abandons the wait; afterwards it goes to the command.
  const controller = new AbortController();
  let child: ReturnType<typeof spawn> | null = null;
  let early: NodeJS.Signals | null = null;
  const unsubscribe = io.onSignal((signal) => {
    if (child) child.kill(signal);
    else {
      early ??= signal;
      controller.abort();
    }
  });
  try {
    let handle;
    try {
      handle = await lock.acquire({
        purpose: `lock run: ${command.join(" ").slice(0, 200)}`,
        ...(waitSeconds === undefined ? {} : { waitSeconds }),
        signal: controller.signal,
      });
    } catch (error) {
      if (early) return signalExitCode(early);
      if (isGpuCanaryError(error) && error.kind === "refused") {
        io.stderr(`gpu-canary lock run: could not take the GPU lock: ${error.message}\n`);
        return conflictCode;
      }
      throw error;
    }
    try {
      if (early) return signalExitCode(early);
      let lost: Error | null = null;
      const running = setpriv
        ? spawn(setpriv, ["--pdeathsig", "KILL", "--", file, ...args], { stdio: "inherit" })
        : spawn(file, args, { stdio: "inherit" });
      child = running;
      const stopRenewal = handle.startRenewal((error) => {
        lost = error;
        io.stderr(`gpu-canary lock run: the GPU lock was lost (${error.message}); stopping the command\n`);
        running.kill("SIGTERM");
      });
      try {
        const code = await new Promise<number>((resolve, reject) => {
          running.once("error", (error: NodeJS.ErrnoException) => {
            if (error.code === "ENOENT") {
              io.stderr(`gpu-canary lock run: ${file}: command not found\n`);
              resolve(127);
            } else reject(error);
          });
          running.once("exit", (exitCode, signal) => resolve(signal ? signalExitCode(signal) : (exitCode ?? 1)));
        });
        if (lost)
          throw new GpuCanaryError("LOCK_LOST", "the GPU lock was lost while the command ran; it was stopped", {
            kind: "fault",
            hint: "see `gpu-canary audit tail` for who took it",
          });
        return code;
      } finally {
        stopRenewal();
      }
    } finally {
      await handle.release();
    }
  } finally {
    unsubscribe();
  }
}
