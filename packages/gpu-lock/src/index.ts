export { createGpuLock } from "./gpu-lock.ts";
export type {
  AcquireGpuLockOptions,
  AuditSink,
  ForceReleaseResult,
  GpuLock,
  GpuLockDeps,
  GpuLockHandle,
  GpuLockStatus,
  LockAuditEvent,
} from "./gpu-lock.ts";
export { CrashedRunError, GpuLockHeldError, GpuLockUnreadableError } from "./errors.ts";
export { awaitsRecovery, describeHolder, generationOf, gpuLockRecordSchema, timeOf } from "./record.ts";
export type { GpuLockRecord } from "./record.ts";
export { processSignals, withGpuLock } from "./with-gpu-lock.ts";
export type { SignalSource } from "./with-gpu-lock.ts";
