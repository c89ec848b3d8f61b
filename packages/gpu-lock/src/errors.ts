import { basename } from "node:path";
import { GpuCanaryError } from "@gpu-canary/errors";

export class GpuLockHeldError extends GpuCanaryError {
  constructor(path: string, holder: string, waitedSeconds: number | null) {
    const waited = waitedSeconds === null ? "" : ` after waiting ${waitedSeconds.toFixed(1)} s`;
    super("GPU_LOCK_HELD", `the GPU maintenance lock ${path} is held${waited}: ${holder}`, {
      kind: "refused",
      hint: "wait for the holder to finish (`gpu-canary lock status` shows it); if it is gone, `gpu-canary lock release`",
      details: { path },
    });
  }
}

export class CrashedRunError extends GpuCanaryError {
  constructor(path: string, holder: string) {
    super("CRASHED_RUN_AWAITS_RECOVERY", `a crashed run awaits recovery: ${holder} stopped production and was never charged (${path})`, {
      kind: "refused",
      hint: "production may be down: run `gpu-canary recover` to restore it, charge the downtime and release the lock; `gpu-canary lock release --force` only drops the lock",
      details: { path },
    });
  }
}

/**
 * What to do about an unreadable lock. A regular file is moved aside by a forced release, its
 * content kept for whoever looks into the damage; a folder, FIFO, link or oversized file at the
 * lock path is never touched for you.
 */
export function unreadableLockHint(path: string, movable: boolean): string {
  return movable
    ? `\`gpu-canary lock release --force\` moves it aside, kept beside it as ${basename(path)}.unreadable-<time>; lock records are written whole, so this is damage from outside, not a lock being taken`
    : `gpu-canary never removes what is there; move ${path} aside by hand once no maintenance runs`;
}

/** The lock path holds something that is not a lock record: fail closed until an operator looks. */
export class GpuLockUnreadableError extends GpuCanaryError {
  /** `hint`: unreadableLockHint's answer for what is at the path (also `GpuLockStatus.hint`) */
  constructor(path: string, reason: string, hint: string) {
    super("GPU_LOCK_UNREADABLE", `the GPU maintenance lock ${path} is unreadable: it ${reason}`, {
      kind: "fault",
      hint,
      details: { path, reason },
    });
  }
}
