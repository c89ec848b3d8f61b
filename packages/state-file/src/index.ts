export { formatJson, siblingTempPath, writeFileAtomic, writeJsonAtomic } from "./atomic-write.ts";
export type { AtomicWriteOptions } from "./atomic-write.ts";
export { LockTimeoutError, StateUnreadableError, StateWriteError } from "./errors.ts";
export {
  LockLostError,
  baseLockRecordSchema,
  createFileLock,
  describeLockState,
  withFileLock,
} from "./file-lock.ts";
export type { AcquireOptions, BaseLockRecord, FileLock, FileLockOptions, HeldLock, LockState, TryAcquireResult } from "./file-lock.ts";
export { nodeFs } from "./fs-ops.ts";
export type { FsOps } from "./fs-ops.ts";
export { createProcessInspector, isValidPid, parseProcStat } from "./process-identity.ts";
export type { ProcessInspector, ProcessProbe } from "./process-identity.ts";
export { loadJsonState, parseState, readJsonState, readRaw } from "./read-state.ts";
export type { RawFile, RawRead, ReadOptions, ReadResult } from "./read-state.ts";
export { unwrapRead, updateJsonState, updateLockPath } from "./update-state.ts";
export type { UpdateOptions, UpdateStep } from "./update-state.ts";
