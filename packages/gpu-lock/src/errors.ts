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

export class GpuLockUnreadableError extends GpuCanaryError {
  constructor(path: string, reason: string, removable: boolean) {
    super("GPU_LOCK_UNREADABLE", `the GPU maintenance lock ${path} is unreadable: ${reason}`, {
      kind: removable ? "refused" : "fault",
      hint: removable ? "it may be mid-write; try again in a few seconds, or `gpu-canary lock release --force`" : `remove ${path} by hand`,
      details: { path },
    });
  }
}
