import { hostname as osHostname } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type FsOps,
  type HeldLock,
  type LockState,
  type ProcessInspector,
  LockLostError,
  asWriteError,
  createFileLock,
  makeDirSync,
  parseState,
  readRawSync,
  writeCounterSync,
} from "@gpu-canary/state-file";
import * as z from "zod";
import { CrashedRunError, GpuLockHeldError, GpuLockUnreadableError, unreadableLockHint } from "./errors.ts";
import { type GpuLockRecord, awaitsRecovery, describeHolder, generationOf, gpuLockRecordSchema, timeOf } from "./record.ts";

/** The lock events, as the audit feed takes them (structurally: any sink with `append`). */
export type LockAuditEvent =
  | { event: "lock_acquired"; run_id?: string | null; generation: number; owner: string; purpose?: string }
  | { event: "lock_released"; run_id?: string | null; generation: number }
  | {
      event: "lock_force_released";
      run_id?: string | null;
      evicted: Record<string, unknown> | null;
      generation: number;
      reason: string;
      /** set when the record was unreadable: why, and where it was moved (its content kept) */
      unreadable?: { reason: string; moved_to: string };
    }
  | { event: "lock_stale_released"; run_id?: string | null; evicted: Record<string, unknown>; reason: string };

export interface AuditSink {
  append(event: LockAuditEvent): Promise<unknown>;
}

export interface GpuLockDeps {
  /** $KLR_HOME/.kloros/locks/gpu_maintenance.lock */
  path: string;
  ttlSeconds: number;
  /** who takes the lock, e.g. "gpu-canary evaluate" */
  owner: string;
  now?: () => Date;
  inspector?: ProcessInspector;
  host?: string;
  pid?: number;
  fs?: FsOps;
  audit?: AuditSink;
}

export interface GpuLockStatus {
  state: "free" | "held" | "stale" | "unreadable";
  held: boolean;
  stale: boolean;
  /** the holder is provably alive (false when stale, unknown for another host) */
  alive: boolean | null;
  /**
   * a dead holder's run stopped production and was never charged: only recovery finishes it.
   * A live run in the middle of its quiesce is not one (its journal says the same phase).
   */
  awaitsRecovery: boolean;
  holder: GpuLockRecord | null;
  reason: string;
  ageSeconds: number | null;
  expiresInSeconds: number | null;
  /** what an operator does about an unreadable lock; null otherwise */
  hint: string | null;
}

export interface AcquireGpuLockOptions {
  purpose?: string;
  runId?: string;
  /** undefined waits as long as it takes; 0 tries once */
  waitSeconds?: number;
  signal?: AbortSignal;
  /** journal fields published with the record itself (recovery carries a crashed run's over: no instant without them) */
  journal?: Partial<GpuLockRecord>;
}

export interface GpuLockHandle {
  readonly path: string;
  readonly generation: number;
  record(): GpuLockRecord;
  /** push expires_at a TTL ahead; throws LOCK_LOST when the lock is no longer ours */
  renew(): Promise<void>;
  /** write journal fields (phase, production_stopped_at, …) atomically */
  journal(patch: Partial<GpuLockRecord>): Promise<void>;
  /** the fencing check before a destructive step: the record is ours and its generation unchanged */
  checkFence(): Promise<void>;
  /** renew every TTL/4 until stopped; `onLost` hears of a lost lock at the next renewal */
  startRenewal(onLost: (error: Error) => void): () => void;
  release(): Promise<"released" | "lost">;
}

export interface GpuLock {
  readonly path: string;
  status(): Promise<GpuLockStatus>;
  acquire(options?: AcquireGpuLockOptions): Promise<GpuLockHandle>;
  /** take a stale lock, including a crashed run's (recovery only); returns the evicted record */
  takeOverForRecovery(options?: AcquireGpuLockOptions): Promise<{ handle: GpuLockHandle; evicted: GpuLockRecord | null }>;
  /** `lock release`: a stale lock only; "free" when there was nothing */
  releaseStale(): Promise<{ released: "free" | "stale"; evicted: GpuLockRecord | null; reason: string }>;
  /**
   * `lock release --force`: whatever is there (an unreadable record is moved aside, not
   * deleted); bumps the generation so an evicted holder fails its next check
   */
  forceRelease(reason: string): Promise<ForceReleaseResult>;
}

export interface ForceReleaseResult {
  evicted: GpuLockRecord | null;
  wasLive: boolean;
  awaitedRecovery: boolean;
  generation: number;
  /** an unreadable record: why, and where it now lies */
  movedAside: { reason: string; path: string } | null;
}

const counterSchema = z.looseObject({ generation: z.number().int().nonnegative() });

export function createGpuLock(deps: GpuLockDeps): GpuLock {
  const now = deps.now ?? (() => new Date());
  const host = deps.host ?? osHostname();
  const ttlMs = deps.ttlSeconds * 1000;
  const counterPath = join(dirname(deps.path), "gpu_maintenance.generation");
  const lock = createFileLock<GpuLockRecord>({
    path: deps.path,
    schema: gpuLockRecordSchema,
    inspector: deps.inspector,
    host,
    pid: deps.pid,
    now,
    // A lock need not survive power loss (a reboot ends its holder); the journal is made durable.
    durable: false,
    hint: unreadableLockHint(deps.path, true),
    expiry: (record, at) => {
      const expires = timeOf(record.expires_at);
      return expires !== null && expires <= at.getTime() ? `its lease expired at ${new Date(expires).toISOString()} without renewal` : null;
    },
    protect: (record) => (awaitsRecovery(record) ? "a crashed run awaits recovery" : null),
  });

  /**
   * The counter beside the lock remembers the last generation across releases. Only the holder
   * (right after winning the lock) and a forced release write it; a proposal is above the counter
   * and above any record seen, and only the process whose record gets published keeps its number.
   */
  const proposeGeneration = (seen: number): number => Math.max(readCounter(), seen) + 1;
  const writeCounter = (generation: number): void => {
    try {
      // A forced release may come before any lock was ever taken here: the folder may not exist yet.
      makeDirSync(dirname(counterPath));
      writeCounterSync(counterPath, JSON.stringify({ generation }));
    } catch (error) {
      // A folder or a link where the counter goes, a full or read-only disk: the counter file named, with its fix.
      throw asWriteError(counterPath, error);
    }
  };

  const toStatus = (state: LockState<GpuLockRecord>): GpuLockStatus => {
    const t = now().getTime();
    if (state.state === "free") {
      return {
        state: "free",
        held: false,
        stale: false,
        alive: null,
        awaitsRecovery: false,
        holder: null,
        reason: "free",
        ageSeconds: null,
        expiresInSeconds: null,
        hint: null,
      };
    }
    if (state.state === "unreadable") {
      return {
        state: "unreadable",
        held: true,
        stale: false,
        alive: null,
        awaitsRecovery: false,
        holder: null,
        reason: state.reason,
        ageSeconds: null,
        expiresInSeconds: null,
        hint: unreadableHint(state),
      };
    }
    const record = state.record;
    const acquired = timeOf(record.acquired_at);
    const expires = timeOf(record.expires_at);
    const foreign = record.host !== host;
    return {
      state: state.state,
      held: true,
      stale: state.state === "stale",
      alive: state.state === "stale" ? false : foreign ? null : !state.reason.includes("cannot be checked"),
      awaitsRecovery: state.state === "stale" && awaitsRecovery(record),
      holder: record,
      reason: state.state === "stale" && state.protectedBy ? `${state.protectedBy} (${state.reason})` : state.reason,
      ageSeconds: acquired === null ? null : (t - acquired) / 1000,
      expiresInSeconds: expires === null ? null : (expires - t) / 1000,
      hint: null,
    };
  };

  const handleFor = (held: HeldLock<GpuLockRecord>): GpuLockHandle => {
    const generation = generationOf(held.record());
    const checkFence = async () => {
      if (!(await held.stillHeld())) throw new LockLostError(deps.path);
      const counter = readCounter();
      if (counter > generation) throw new LockLostError(deps.path);
    };
    const renew = async () => {
      const at = now();
      await held.update({ expires_at: new Date(at.getTime() + ttlMs).toISOString(), renewed_at: at.toISOString() });
    };
    return {
      path: deps.path,
      generation,
      record: () => held.record(),
      renew,
      journal: async (patch) => {
        await held.update(patch);
      },
      checkFence,
      startRenewal: (onLost) => {
        const every = Math.max(250, ttlMs / 4);
        let stopped = false;
        const timer = setInterval(() => {
          renew().catch((error: unknown) => {
            if (stopped) return;
            stopped = true;
            clearInterval(timer);
            onLost(error instanceof Error ? error : new Error(String(error)));
          });
        }, every);
        timer.unref();
        return () => {
          stopped = true;
          clearInterval(timer);
        };
      },
      release: async () => {
        const result = await held.release();
        if (result === "released") await deps.audit?.append({ event: "lock_released", run_id: held.record().run_id ?? null, generation });
        return result;
      },
    };
  };

  /** The counter, or 0 when missing; an unreadable counter is rebuilt from the records seen. */
  const readCounter = (): number => {
    const raw = readRawSync(counterPath, "it is rebuilt from the lock records");
    if (raw.status !== "ok") return 0;
    const parsed = parseState(raw.file.text, counterSchema);
    return parsed.ok ? parsed.value.generation : 0;
  };

  const fieldsFor = (generation: number, options: AcquireGpuLockOptions): Partial<GpuLockRecord> => ({
    owner: deps.owner,
    expires_at: new Date(now().getTime() + ttlMs).toISOString(),
    generation,
    ...(options.purpose ? { purpose: options.purpose } : {}),
    ...(options.runId ? { run_id: options.runId } : {}),
    ...options.journal,
  });

  /** The way to the lock at fault (a file where its folder should be, a link loop) has the file system's fix; else what is at the path decides. */
  const unreadableHint = (state: Extract<LockState<GpuLockRecord>, { state: "unreadable" }>): string =>
    state.error.pathFault ? state.error.hint : unreadableLockHint(deps.path, state.file !== null);

  const refusal = (state: Exclude<LockState<GpuLockRecord>, { state: "free" }>, waitedSeconds: number | null): Error => {
    if (state.state === "unreadable") return new GpuLockUnreadableError(deps.path, state.reason, unreadableHint(state));
    if (state.state === "stale" && state.protectedBy) return new CrashedRunError(deps.path, describeHolder(state.record));
    return new GpuLockHeldError(deps.path, `${describeHolder(state.record)}; ${state.reason}`, waitedSeconds);
  };

  /** `floor`: a generation already seen (an evicted record's), which the next must exceed. */
  const acquire = async (options: AcquireGpuLockOptions = {}, floor = 0): Promise<GpuLockHandle> => {
    const started = Date.now();
    for (;;) {
      options.signal?.throwIfAborted();
      const seen = await lock.inspect();
      if (seen.state === "unreadable" || (seen.state === "stale" && seen.protectedBy)) throw refusal(seen, null);
      // Only spend a generation number when the lock looks takeable.
      if (seen.state === "free" || seen.state === "stale") {
        const proposed = proposeGeneration(Math.max(floor, seen.state === "stale" ? generationOf(seen.record) : 0));
        const attempt = await lock.tryAcquire(fieldsFor(proposed, options));
        if (attempt.acquired) {
          try {
            // The counter may have moved between our proposal and our win (the previous holder
            // wrote it after we read it): then take the next number, so generations only grow.
            const counter = readCounter();
            const generation = counter >= proposed ? counter + 1 : proposed;
            if (generation !== proposed) await attempt.lock.update({ generation });
            writeCounter(generation);
            if (seen.state === "stale") {
              await deps.audit?.append({
                event: "lock_stale_released",
                run_id: seen.record.run_id ?? null,
                evicted: seen.record,
                reason: seen.reason,
              });
            }
            await deps.audit?.append({
              event: "lock_acquired",
              run_id: options.runId ?? null,
              generation,
              owner: deps.owner,
              ...(options.purpose ? { purpose: options.purpose } : {}),
            });
          } catch (error) {
            // Nothing was done under the lock: give it back rather than leave it for `lock release`.
            await attempt.lock.release().catch(() => undefined);
            throw error;
          }
          return handleFor(attempt.lock);
        }
        const lost = attempt.state;
        if (lost.state === "unreadable" || (lost.state === "stale" && lost.protectedBy)) throw refusal(lost, null);
      }
      const waited = (Date.now() - started) / 1000;
      if (options.waitSeconds !== undefined && waited >= options.waitSeconds) {
        const state = await lock.inspect();
        throw state.state === "free"
          ? new GpuLockHeldError(deps.path, "taken and released by others while we tried", waited)
          : refusal(state, waited);
      }
      await sleep(50 + Math.random() * 100, undefined, { signal: options.signal });
    }
  };

  return {
    path: deps.path,
    status: async () => toStatus(await lock.inspect()),
    acquire: (options) => acquire(options),

    async takeOverForRecovery(options = {}) {
      for (let round = 0; round < 20; round += 1) {
        const seen = await lock.inspect();
        if (seen.state === "held" || seen.state === "unreadable") throw refusal(seen, null);
        let evicted: GpuLockRecord | null = null;
        if (seen.state === "stale") {
          if (!(await lock.breakRecord(seen.file))) continue;
          evicted = seen.record;
          await deps.audit?.append({
            event: "lock_stale_released",
            run_id: seen.record.run_id ?? null,
            evicted: seen.record,
            reason: seen.protectedBy ?? seen.reason,
          });
        }
        const handle = await acquire({ ...options, waitSeconds: 0 }, evicted ? generationOf(evicted) : 0).catch(() => null);
        if (handle) return { handle, evicted };
      }
      throw new GpuLockHeldError(deps.path, "another process took it during recovery", null);
    },

    async releaseStale() {
      for (let round = 0; round < 5; round += 1) {
        const seen = await lock.inspect();
        if (seen.state === "free") return { released: "free" as const, evicted: null, reason: "the lock is free" };
        if (seen.state !== "stale" || seen.protectedBy) throw refusal(seen, null);
        if (await lock.breakRecord(seen.file)) {
          await deps.audit?.append({
            event: "lock_stale_released",
            run_id: seen.record.run_id ?? null,
            evicted: seen.record,
            reason: seen.reason,
          });
          return { released: "stale" as const, evicted: seen.record, reason: seen.reason };
        }
      }
      throw new GpuLockHeldError(deps.path, "it changed repeatedly while we tried to release it", null);
    },

    async forceRelease(reason) {
      for (let round = 0; round < 5; round += 1) {
        const seen = await lock.inspect();
        const evicted = seen.state === "held" || seen.state === "stale" ? seen.record : null;
        if (seen.state === "unreadable" && !seen.file) throw refusal(seen, null);
        // The counter first: one that cannot be written leaves the lock as it was, and a
        // number spent on a round that retries only makes generations grow faster.
        const generation = proposeGeneration(evicted ? generationOf(evicted) : 0);
        writeCounter(generation);
        let movedAside: ForceReleaseResult["movedAside"] = null;
        if (seen.state === "unreadable") {
          const movedTo = seen.file ? await lock.moveAside(seen.file) : null;
          if (movedTo === null) continue;
          movedAside = { reason: seen.reason, path: movedTo };
        } else if (seen.state !== "free" && !(await lock.breakRecord(seen.file))) continue;
        await deps.audit?.append({
          event: "lock_force_released",
          run_id: evicted?.run_id ?? null,
          evicted,
          generation,
          reason,
          ...(movedAside ? { unreadable: { reason: movedAside.reason, moved_to: movedAside.path } } : {}),
        });
        return {
          evicted,
          wasLive: seen.state === "held",
          awaitedRecovery: evicted !== null && awaitsRecovery(evicted),
          generation,
          movedAside,
        };
      }
      throw new GpuLockHeldError(deps.path, "it changed repeatedly while we tried to force-release it", null);
    },
  };
}
