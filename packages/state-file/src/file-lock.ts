import { hostname as osHostname } from "node:os";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GpuCanaryError, errnoCode } from "@gpu-canary/errors";
import { z } from "zod";
import { siblingTempPath, syncDir, writeAndSync } from "./atomic-write.ts";
import { LockTimeoutError, StateUnreadableError } from "./errors.ts";
import { type FsOps, nodeFs } from "./fs-ops.ts";
import { type ProcessInspector, createProcessInspector } from "./process-identity.ts";
import { type RawFile, parseState, readRaw } from "./read-state.ts";

/** The fields every lock record has; holders may add their own (run id, expiry, journal). */
export const baseLockRecordSchema = z.looseObject({
  pid: z
    .number()
    .int()
    .min(1)
    .max(2 ** 31 - 1),
  host: z.string().min(1),
  start_token: z.string().nullable().optional(),
  acquired_at: z.string(),
});
export type BaseLockRecord = z.infer<typeof baseLockRecordSchema>;

export type LockState<R> =
  | { state: "free" }
  | { state: "held"; record: R; file: RawFile; reason: string }
  | { state: "stale"; record: R; file: RawFile; reason: string }
  | {
      state: "unreadable";
      error: StateUnreadableError;
      /** present when a regular file is there; folders, FIFOs and links are never removed for you */
      file: RawFile | null;
      stale: boolean;
      reason: string;
    };

export interface FileLockOptions<R extends BaseLockRecord> {
  path: string;
  schema?: z.ZodType<R>;
  fs?: FsOps;
  inspector?: ProcessInspector;
  host?: string;
  pid?: number;
  now?: () => Date;
  /** a malformed record is only broken once it is this old: its writer may be mid-way */
  unreadableGraceMs?: number;
  /** a break claim left by a breaker that died is cleared after this long */
  breakClaimGraceMs?: number;
  /** staleness beyond proof of death, e.g. an expired lease; a reason, or null while valid */
  expiry?: (record: R, now: Date) => string | null;
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
}

export function createFileLock<R extends BaseLockRecord = BaseLockRecord>(options: FileLockOptions<R>): FileLock<R> {
  const fs = options.fs ?? nodeFs;
  const inspector = options.inspector ?? createProcessInspector();
  const host = options.host ?? osHostname();
  const pid = options.pid ?? process.pid;
  const now = options.now ?? (() => new Date());
  const schema = options.schema ?? (baseLockRecordSchema as unknown as z.ZodType<R>);
  const unreadableGraceMs = options.unreadableGraceMs ?? 2000;
  const breakClaimGraceMs = options.breakClaimGraceMs ?? 10_000;
  const hint = options.hint ?? `if its holder is gone, remove ${options.path} by hand`;
  const path = options.path;

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

  const inspect = async (): Promise<LockState<R>> => {
    const raw = await readRaw(path, { fs, hint });
    if (raw.status === "missing") return { state: "free" };
    if (raw.status === "unreadable") {
      return { state: "unreadable", error: raw.error, file: null, stale: false, reason: `${raw.error.reason}; remove it by hand` };
    }
    const parsed = parseState(raw.file.text, schema);
    if (!parsed.ok) {
      const ageMs = Date.now() - Number(raw.file.mtimeNs / 1_000_000n);
      const stale = ageMs >= unreadableGraceMs;
      return {
        state: "unreadable",
        error: new StateUnreadableError(path, parsed.reason, hint),
        file: raw.file,
        stale,
        reason: stale
          ? `unreadable for ${(ageMs / 1000).toFixed(1)} s: ${parsed.reason}`
          : `unreadable, may be mid-write: ${parsed.reason}`,
      };
    }
    const verdict = judge(parsed.value);
    return verdict.stale
      ? { state: "stale", record: parsed.value, file: raw.file, reason: verdict.reason }
      : { state: "held", record: parsed.value, file: raw.file, reason: verdict.reason };
  };

  /**
   * Break exactly the record that was judged: hard-link it to a claim name derived from its
   * identity (only one breaker can create that name), check the claim is the judged inode and
   * content, then remove the lock path. A slow breaker that links a newer record under an old
   * claim name sees the mismatch and backs off without touching it.
   */
  const breakRecord = async (file: RawFile): Promise<boolean> => {
    const claim = `${path}.break-${file.ino}-${file.mtimeNs}`;
    try {
      await fs.link(path, claim);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") return false;
      if (code === "EEXIST") {
        await clearAbandonedClaim(claim);
        return false;
      }
      throw error;
    }
    try {
      const claimed = await readRaw(claim, { fs });
      if (
        claimed.status !== "ok" ||
        claimed.file.ino !== file.ino ||
        claimed.file.mtimeNs !== file.mtimeNs ||
        claimed.file.text !== file.text
      ) {
        return false;
      }
      const current = await fs.lstat(path, { bigint: true }).catch(() => null);
      if (current?.ino !== file.ino) return false;
      await fs.unlink(path);
      await syncDir(fs, dirname(path));
      return true;
    } finally {
      await fs.unlink(claim).catch(() => undefined);
    }
  };

  const clearAbandonedClaim = async (claim: string): Promise<void> => {
    const stats = await fs.lstat(claim, { bigint: true }).catch(() => null);
    if (stats && Date.now() - Number(stats.ctimeMs) > breakClaimGraceMs) {
      await fs.unlink(claim).catch(() => undefined);
    }
  };

  /** The record at the path is ours when inode, mtime and bytes all match what we published (inode numbers alone are reused). */
  const published = async (): Promise<RawFile | null> => {
    const raw = await readRaw(path, { fs });
    return raw.status === "ok" ? raw.file : null;
  };
  const sameFile = (a: RawFile | null, b: RawFile): boolean =>
    a !== null && a.ino === b.ino && a.mtimeNs === b.mtimeNs && a.text === b.text;

  const held = (initial: R, file: RawFile): HeldLock<R> => {
    let record = initial;
    let identity = file;
    const stillHeld = async (): Promise<boolean> => sameFile(await published(), identity);
    return {
      path,
      record: () => record,
      stillHeld,
      update: async (patch) => {
        if (!(await stillHeld())) throw new LockLostError(path);
        const next = schema.parse({ ...record, ...patch });
        const temp = siblingTempPath(path);
        await writeAndSync(fs, temp, `${JSON.stringify(next, null, 2)}\n`);
        try {
          await fs.rename(temp, path);
        } catch (error) {
          await fs.unlink(temp).catch(() => undefined);
          throw error;
        }
        await syncDir(fs, dirname(path));
        const current = await published();
        if (current === null) throw new LockLostError(path);
        identity = current;
        record = next;
        return next;
      },
      release: async () => {
        if (!(await stillHeld())) return "lost";
        await fs.unlink(path);
        await syncDir(fs, dirname(path)).catch(() => undefined);
        return "released";
      },
    };
  };

  const tryAcquire = async (fields: Partial<R> = {}): Promise<TryAcquireResult<R>> => {
    const record = schema.parse({
      ...fields,
      pid,
      host,
      start_token: inspector.selfToken(),
      acquired_at: now().toISOString(),
    });
    const text = `${JSON.stringify(record, null, 2)}\n`;
    await fs.mkdir(dirname(path), { recursive: true });
    const temp = siblingTempPath(path);
    await writeAndSync(fs, temp, text);
    try {
      // A few rounds: each either takes the lock, reports a live holder, or removes a stale record.
      for (let round = 0; round < 5; round += 1) {
        try {
          // link() publishes a complete record in one step and fails if any record exists.
          await fs.link(temp, path);
          await syncDir(fs, dirname(path));
          const mine = await published();
          if (mine === null || mine.text !== text) throw new LockLostError(path);
          return { acquired: true, lock: held(record, mine) };
        } catch (error) {
          if (errnoCode(error) !== "EEXIST") throw error;
        }
        const state = await inspect();
        if (state.state === "free") continue;
        if (state.state === "held") return { acquired: false, state };
        if (state.state === "unreadable" && (!state.stale || state.file === null)) return { acquired: false, state };
        if (state.file) await breakRecord(state.file);
      }
      const state = await inspect();
      return state.state === "free" ? await tryAcquire(fields) : { acquired: false, state };
    } finally {
      await fs.unlink(temp).catch(() => undefined);
    }
  };

  const acquire = async (fields: Partial<R> = {}, acquireOptions: AcquireOptions = {}): Promise<HeldLock<R>> => {
    const started = Date.now();
    const [minPoll, maxPoll] = acquireOptions.pollMs ?? [5, 25];
    for (;;) {
      acquireOptions.signal?.throwIfAborted();
      const attempt = await tryAcquire(fields);
      if (attempt.acquired) return attempt.lock;
      const waited = Date.now() - started;
      if (acquireOptions.waitMs !== undefined && waited >= acquireOptions.waitMs) {
        throw new LockTimeoutError(path, waited, describeLockState(attempt.state));
      }
      const pause = minPoll + Math.random() * (maxPoll - minPoll);
      const left = acquireOptions.waitMs === undefined ? pause : Math.min(pause, acquireOptions.waitMs - waited);
      await sleep(Math.max(1, left), undefined, { signal: acquireOptions.signal });
    }
  };

  return { path, inspect, tryAcquire, acquire, breakRecord };
}

export function describeLockState(state: LockState<BaseLockRecord>): string {
  switch (state.state) {
    case "free":
      return "free";
    case "held":
    case "stale":
      return `${state.reason} (since ${state.record.acquired_at})`;
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
