import { GpuCanaryError, errnoCode, fileSystemProblem, isGpuCanaryError, messageOf } from "@gpu-canary/errors";

/** A state file exists but cannot be used. Never reset silently: the hint says how to repair it. */
export class StateUnreadableError extends GpuCanaryError {
  readonly path: string;
  readonly reason: string;
  /**
   * The way to the file is at fault (a file where a folder should be, a link loop above it,
   * permissions), not what is at the path: the hint is the file system's fix, not the caller's.
   */
  readonly pathFault: boolean;

  constructor(path: string, reason: string, hint: string, cause?: unknown, pathFault = false) {
    super("STATE_UNREADABLE", `${path}: ${reason}`, { kind: "fault", hint, cause, details: { path, reason } });
    this.path = path;
    this.reason = reason;
    this.pathFault = pathFault;
  }
}

/** A state file could not be written (disk full, read-only file system, permissions): the cause in plain words and its fix. */
export class StateWriteError extends GpuCanaryError {
  readonly path: string;

  constructor(path: string, cause: unknown) {
    const problem = fileSystemProblem(errnoCode(cause), path);
    super("STATE_WRITE_FAILED", `could not write ${path}: ${problem?.reason ?? messageOf(cause)}`, {
      kind: "fault",
      hint: `${problem?.fix ?? "check the disk space and the permissions of the folder"} (the file's previous content is unchanged)`,
      cause,
      details: { path, ...(problem ? { errno: problem.errno } : {}) },
    });
    this.path = path;
  }
}

/**
 * What a write of `path` threw, as the operator should see it: a Node system error becomes a
 * StateWriteError naming `path`; our own errors (a lock lost, a refusal) and bugs pass unchanged.
 */
export function asWriteError(path: string, error: unknown): Error {
  if (errnoCode(error) !== undefined && !isGpuCanaryError(error)) return new StateWriteError(path, error);
  return error instanceof Error ? error : new Error(messageOf(error));
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
