import { linkSync, lstatSync, unlinkSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GpuCanaryError, errnoCode } from "@gpu-canary/errors";
import * as z from "zod";
import { siblingTempPath } from "./atomic-write.ts";
import { LockTimeoutError, StateUnreadableError, StateWriteError, asWriteError } from "./errors.ts";
import { createExclusiveSync, readRawSync, replaceFileSync, syncDirSync } from "./lock-fs.ts";
import { makeDirSync } from "./make-dir.ts";
import { type ProcessInspector, createProcessInspector } from "./process-identity.ts";
import { type RawFile, parseState } from "./read-state.ts";

/** The fields every lock record has; holders may add their own (run id, expiry, journal). */
export const baseLockRecordSchema = z.looseObject({
  pid: z
    .number()
    .int()
    .min(1)
    .max(2 ** 31 - 1),
  host: z.string().min(1),
  start_token: z.string().nullable().optional(),
  // Records from the system this replaces may carry epoch seconds.
  acquired_at: z.union([z.string(), z.number()]),
});
export type BaseLockRecord = z.infer<typeof baseLockRecordSchema>;

export type LockState<R> =
  | { state: "free" }
  | { state: "held"; record: R; file: RawFile; reason: string }
  | {
      state: "stale";
      record: R;
      file: RawFile;
      reason: string;
      /** set when a plain acquire must not take it over (a crashed run awaiting recovery) */
      protectedBy?: string;
    }
  | {
      /**
       * Records are only ever published whole (link() of a finished file, rename() on update),
       * so an unreadable one is damage from outside, not a write in progress: it is never taken
       * over, only moved aside on an operator's word (`moveAside`).
       */
      state: "unreadable";
      error: StateUnreadableError;
      /** present when a regular file is there; folders, FIFOs and links are never moved for you */
      file: RawFile | null;
      reason: string;
    };

export interface FileLockOptions<R extends BaseLockRecord> {
  path: string;
  schema?: z.ZodType<R>;
  inspector?: ProcessInspector;
  host?: string;
  pid?: number;
  now?: () => Date;
  /** a break claim left by a breaker that died is cleared after this long */
  breakClaimGraceMs?: number;
  /** staleness beyond proof of death, e.g. an expired lease; a reason, or null while valid */
  expiry?: (record: R, now: Date) => string | null;
  /**
   * fsync lock records and the folder on acquire, break and release (default true). A lock
   * need not survive power loss — a reboot kills its holder — so locks held for microseconds
   * (state-file's own read-modify-write) or taken often may skip it. `update` (a holder's
   * journal) is always made durable.
   */
  durable?: boolean;
  /** a stale record that a plain acquire must leave alone; a reason, or null */
  protect?: (record: R) => string | null;
  hint?: string;
}

export interface AcquireOptions {
  /** give up after this long; undefined waits as long as it takes, 0 tries once */
  waitMs?: number;
  pollMs?: [min: number, max: number];
  signal?: AbortSignal;
}

export type TryAcquireResult<R> =
  { acquired: true; lock: HeldLock<R> } | { acquired: false; state: Exclude<LockState<R>, { state: "free" }> };

export interface HeldLock<R> {
  readonly path: string;
  record(): R;
  /** false when the record on disk is no longer ours (broken or replaced) */
  stillHeld(): Promise<boolean>;
  /** replace our record atomically (renewal, journal); throws LOCK_LOST if it is no longer ours */
  update(patch: Partial<R>): Promise<R>;
  /** remove the record if it is still ours; "lost" leaves a successor's record alone */
  release(): Promise<"released" | "lost">;
}

export class LockLostError extends GpuCanaryError {
  constructor(path: string) {
    super("LOCK_LOST", `the lock ${path} is no longer ours: it was broken or taken over`, {
      kind: "fault",
      hint: "stop before any destructive step; another process may hold the lock now",
    });
  }
}

export interface FileLock<R extends BaseLockRecord> {
  readonly path: string;
  inspect(): Promise<LockState<R>>;
  tryAcquire(fields?: Partial<R>): Promise<TryAcquireResult<R>>;
  acquire(fields?: Partial<R>, options?: AcquireOptions): Promise<HeldLock<R>>;
  /** remove a record that was judged stale (or any record, for a forced release), race-free */
  breakRecord(file: RawFile): Promise<boolean>;
  /**
   * Take an unreadable record off the lock path, race-free like breakRecord, keeping it beside
   * as `<path>.unreadable-<time>`: its new path, or null when the record changed meanwhile.
   */
  moveAside(file: RawFile): Promise<string | null>;
}

export function createFileLock<R extends BaseLockRecord = BaseLockRecord>(options: FileLockOptions<R>): FileLock<R> {
  const inspector = options.inspector ?? createProcessInspector();
  const host = options.host ?? osHostname();
  const pid = options.pid ?? process.pid;
  const now = options.now ?? (() => new Date());
  const schema = options.schema ?? (baseLockRecordSchema as unknown as z.ZodType<R>);
  const breakClaimGraceMs = options.breakClaimGraceMs ?? 10_000;
  const hint = options.hint ?? `if no process holds it, move ${options.path} aside by hand (keep it: it may tell what damaged it)`;
  const path = options.path;
  const dir = dirname(path);
  const durable = options.durable ?? true;
  const syncIfDurable = (): void => {
    if (durable) syncDirSync(dir);
  };

  const judge = (record: R): { stale: boolean; reason: string } => {
    const expired = options.expiry?.(record, now());
    if (expired) return { stale: true, reason: expired };
    if (record.host !== host) {
      return { stale: false, reason: `held by PID ${record.pid} on another host (${record.host}); only its expiry frees it` };
    }
    const probe = inspector.probe(record.pid);
    if (probe.state === "dead") {
      return { stale: true, reason: probe.why === "zombie" ? `process ${record.pid} is a zombie` : `process ${record.pid} is gone` };
    }
    if (probe.state === "unknown") return { stale: false, reason: `process ${record.pid} cannot be checked (${probe.why}); assumed alive` };
    const token = record.start_token ?? null;
    if (token !== null && probe.startToken !== null && token !== probe.startToken) {
      return { stale: true, reason: `PID ${record.pid} now belongs to another process (its start token differs)` };
    }
    return { stale: false, reason: `held by live process ${record.pid}` };
  };

  const inspectSync = (): LockState<R> => {
    const raw = readRawSync(path, hint);
    if (raw.status === "missing") return { state: "free" };
    if (raw.status === "unreadable") return { state: "unreadable", error: raw.error, file: null, reason: raw.error.reason };
    const parsed = parseState(raw.file.text, schema);
    if (!parsed.ok) {
      return { state: "unreadable", error: new StateUnreadableError(path, parsed.reason, hint), file: raw.file, reason: parsed.reason };
    }
    const verdict = judge(parsed.value);
    if (!verdict.stale) return { state: "held", record: parsed.value, file: raw.file, reason: verdict.reason };
    const protectedBy = options.protect?.(parsed.value) ?? undefined;
    return { state: "stale", record: parsed.value, file: raw.file, reason: verdict.reason, ...(protectedBy ? { protectedBy } : {}) };
  };

  /**
   * Break exactly the record that was judged: hard-link it to a claim name derived from its
   * identity (only one breaker can create that name), check the claim is the judged inode and
   * content, then remove the lock path. A slow breaker that links a newer record under an old
   * claim name sees the mismatch and backs off without touching it. With `keepAs`, the claim is
   * linked there before the lock path goes, so the record's content is never without a name.
   */
  const breakSync = (file: RawFile, keepAs?: () => string): string | null => {
    const claim = `${path}.break-${file.ino}-${file.mtimeNs}`;
    try {
      linkSync(path, claim);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") return null;
      if (code === "EEXIST") {
        clearAbandonedClaim(claim);
        return null;
      }
      throw error;
    }
    try {
      const claimed = readRawSync(claim, hint);
      if (claimed.status !== "ok" || !sameFile(claimed.file, file) || claimed.file.text !== file.text) return null;
      if (!sameFile(identityOf(path), file)) return null;
      const kept = keepAs ? linkUnique(claim, keepAs()) : path;
      unlinkSync(path);
      // A record set aside is an operator's evidence: make its new name survive power loss too.
      if (keepAs) syncDirSync(dir);
      else syncIfDurable();
      return kept;
    } finally {
      unlinkQuietly(claim);
    }
  };

  const clearAbandonedClaim = (claim: string): void => {
    const stats = identityOf(claim);
    if (stats && Date.now() - Number(stats.ctimeNs / 1_000_000n) > breakClaimGraceMs) unlinkQuietly(claim);
  };

  const held = (initial: R, published: Identity): HeldLock<R> => {
    let record = initial;
    let identity = published;
    // Inode, mtime and size together: inode numbers alone are reused as soon as a file is removed.
    const stillHeldSync = (): boolean => sameFile(identityOf(path), identity);
    return {
      path,
      record: () => record,
      stillHeld: () => Promise.resolve(stillHeldSync()),
      update: (patch) => {
        if (!stillHeldSync()) return Promise.reject(new LockLostError(path));
        const next = schema.parse({ ...record, ...patch });
        try {
          replaceFileSync(path, siblingTempPath(path), `${JSON.stringify(next, null, 2)}\n`, true);
        } catch (error) {
          // A full disk or a read-only file system: a fault naming the file, never "a bug".
          return Promise.reject(new StateWriteError(path, error));
        }
        const current = identityOf(path);
        if (current === null) return Promise.reject(new LockLostError(path));
        identity = current;
        record = next;
        return Promise.resolve(next);
      },
      release: () => {
        if (!stillHeldSync()) return Promise.resolve("lost" as const);
        try {
          unlinkSync(path);
        } catch (error) {
          return Promise.reject(asWriteError(path, error));
        }
        try {
          syncIfDurable();
        } catch {
          // the record is gone; a missed folder fsync only matters across power loss
        }
        return Promise.resolve("released" as const);
      },
    };
  };

  const tryAcquireSync = (fields: Partial<R>): TryAcquireResult<R> => {
    const record = schema.parse({ ...fields, pid, host, start_token: inspector.selfToken(), acquired_at: now().toISOString() });
    const text = `${JSON.stringify(record, null, 2)}\n`;
    const temp = siblingTempPath(path);
    let identity: Identity;
    try {
      identity = createExclusiveSync(temp, text, durable);
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
      makeDirSync(dir);
      identity = createExclusiveSync(temp, text, durable);
    }
    try {
      // A few rounds: each either takes the lock, reports a holder, or removes a stale record.
      for (let round = 0; round < 5; round += 1) {
        try {
          // link() publishes a complete record in one step and fails if any record exists;
          // the lock path is the same inode as the temp file, so its identity is already known.
          linkSync(temp, path);
          syncIfDurable();
          return { acquired: true, lock: held(record, identity) };
        } catch (error) {
          if (errnoCode(error) !== "EEXIST") throw error;
        }
        const state = inspectSync();
        if (state.state === "free") continue;
        if (state.state !== "stale" || state.protectedBy) return { acquired: false, state };
        breakSync(state.file);
      }
      const state = inspectSync();
      return state.state === "free" ? tryAcquireSync(fields) : { acquired: false, state };
    } finally {
      unlinkQuietly(temp);
    }
  };

  /** A full disk, a read-only mount or a folder in the way while taking or breaking the lock: a fault naming the lock file. */
  const naming = <T>(act: () => T): T => {
    try {
      return act();
    } catch (error) {
      throw asWriteError(path, error);
    }
  };
  const namingAsync = <T>(act: () => T): Promise<T> => new Promise((resolve) => resolve(naming(act)));

  const acquire = async (fields: Partial<R> = {}, acquireOptions: AcquireOptions = {}): Promise<HeldLock<R>> => {
    const started = Date.now();
    const [minPoll, maxPoll] = acquireOptions.pollMs ?? [5, 25];
    for (;;) {
      acquireOptions.signal?.throwIfAborted();
      const attempt = naming(() => tryAcquireSync(fields));
      if (attempt.acquired) return attempt.lock;
      // Waiting cannot repair a damaged record: fail closed at once, naming the file.
      if (attempt.state.state === "unreadable") throw attempt.state.error;
      const waited = Date.now() - started;
      if (acquireOptions.waitMs !== undefined && waited >= acquireOptions.waitMs) {
        throw new LockTimeoutError(path, waited, describeLockState(attempt.state));
      }
      const pause = minPoll + Math.random() * (maxPoll - minPoll);
      const left = acquireOptions.waitMs === undefined ? pause : Math.min(pause, acquireOptions.waitMs - waited);
      await sleep(Math.max(1, left), undefined, { signal: acquireOptions.signal });
    }
  };

  return {
    path,
    inspect: () => Promise.resolve(inspectSync()),
    tryAcquire: (fields = {}) => namingAsync(() => tryAcquireSync(fields)),
    acquire,
    breakRecord: (file) => namingAsync(() => breakSync(file) !== null),
    // Colons make awkward file names for scp and some shells; the instant stays readable without them.
    moveAside: (file) => namingAsync(() => breakSync(file, () => `${path}.unreadable-${now().toISOString().replaceAll(":", "")}`)),
  };
}

type Identity = { ino: bigint; mtimeNs: bigint; size: bigint };

function identityOf(path: string): (Identity & { ctimeNs: bigint }) | null {
  try {
    const stats = lstatSync(path, { bigint: true });
    return { ino: stats.ino, mtimeNs: stats.mtimeNs, size: stats.size, ctimeNs: stats.ctimeNs };
  } catch {
    return null;
  }
}

function sameFile(a: Identity | null, b: Identity): boolean {
  return a !== null && a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.size === b.size;
}

/** Hard-link `from` as `to`, or as `to-1`, `to-2`… when taken: never over an existing file. */
function linkUnique(from: string, to: string): string {
  for (let n = 0; ; n += 1) {
    const name = n === 0 ? to : `${to}-${n}`;
    try {
      linkSync(from, name);
      return name;
    } catch (error) {
      if (errnoCode(error) !== "EEXIST" || n >= 100) throw error;
    }
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // already gone
  }
}

export function describeLockState(state: LockState<BaseLockRecord>): string {
  switch (state.state) {
    case "free":
      return "free";
    case "held":
      return `${state.reason} (since ${String(state.record.acquired_at)})`;
    case "stale":
      return `${state.protectedBy ?? state.reason} (since ${String(state.record.acquired_at)})`;
    case "unreadable":
      return state.reason;
  }
}

/** Run `fn` while holding the lock at `path`; the lock is released however `fn` ends. */
export async function withFileLock<T>(
  path: string,
  fn: () => Promise<T>,
  options: AcquireOptions & Partial<FileLockOptions<BaseLockRecord>> = {},
): Promise<T> {
  const lock = createFileLock({ ...options, path });
  const heldLock = await lock.acquire({}, options);
  try {
    return await fn();
  } finally {
    await heldLock.release();
  }
}
