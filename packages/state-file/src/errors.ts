import { GpuCanaryError } from "@gpu-canary/errors";

/** A state file exists but cannot be used. Never reset silently: the hint says how to repair it. */
export class StateUnreadableError extends GpuCanaryError {
  readonly path: string;
  readonly reason: string;

  constructor(path: string, reason: string, hint: string, cause?: unknown) {
    super("STATE_UNREADABLE", `${path}: ${reason}`, { kind: "fault", hint, cause, details: { path, reason } });
    this.path = path;
    this.reason = reason;
  }
}

/** A state file could not be written (disk full, read-only file system, permissions). */
export class StateWriteError extends GpuCanaryError {
  constructor(path: string, cause: unknown) {
    const why = cause instanceof Error ? cause.message : String(cause);
    super("STATE_WRITE_FAILED", `could not write ${path}: ${why}`, {
      kind: "fault",
      hint: "check the disk space and the permissions of the folder; the previous content is unchanged",
      cause,
      details: { path },
    });
  }
}

/** A cross-process lock could not be had in time. */
export class LockTimeoutError extends GpuCanaryError {
  constructor(path: string, waitedMs: number, holder: string) {
    super("STATE_LOCK_TIMEOUT", `could not lock ${path} within ${(waitedMs / 1000).toFixed(1)} s: ${holder}`, {
      kind: "fault",
      hint: `if the holder is gone, remove ${path} by hand`,
      details: { path, waited_ms: waitedMs },
    });
  }
}
