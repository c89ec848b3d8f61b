import type pg from "pg";
import * as z from "zod";
import { inTransaction, query } from "./connection.ts";
import { FleetReleaseRefusedError, FleetSlotLostError, type SlotHolder } from "./errors.ts";

export type AcquireResult = { ok: true; token: number; reacquired: boolean } | { ok: false; maxConcurrent: number; holders: SlotHolder[] };

export interface SlotStatus extends SlotHolder {
  /** renewed within `staleAfterSeconds` (by the database's clock) */
  renewing: boolean;
  secondsSinceRenewal: number;
  /** what frees it when its holder is gone */
  releaseCommand: string;
}

export interface FleetSlotsDeps {
  pool: pg.Pool;
  hostId: string;
  /** KLR_FLEET_MAX_CONCURRENT: at most this many hosts in maintenance at once */
  maxConcurrent: number;
  /** a holder not renewed for this long is shown as stale (never freed for it); default 60 s */
  staleAfterSeconds?: number;
}

export interface FleetSlots {
  readonly hostId: string;
  readonly maxConcurrent: number;
  /** take a slot for a run in one transaction; the same host and run again gets its own token back */
  acquire(runId: string): Promise<AcquireResult>;
  /** `--wait SECONDS`: try until a slot is free, the time is up (the last refusal) or the signal aborts */
  acquireWaiting(runId: string, options: { waitSeconds: number; pollMs?: number; signal?: AbortSignal }): Promise<AcquireResult>;
  /** the holder is alive: false when its slot is gone (fenced out) */
  renew(token: number): Promise<boolean>;
  /**
   * Renew every `everyMs` until stopped (the holder's heartbeat). `onLost` once when the slot is
   * gone (fenced out), and renewal stops; `onError` for a failed renewal (the database away),
   * and renewal goes on: the slot stays held all the same.
   */
  keepRenewing(
    token: number,
    options: { everyMs: number; onLost: () => void; onError?: (error: unknown) => void },
  ): { stop(): Promise<void> };
  /** before each destructive step: throws FLEET_SLOT_LOST when the token no longer holds a slot */
  assertHeld(token: number): Promise<void>;
  /** the run's end: frees this host's slot of the run (by run id or fencing token); false when it was not held */
  release(ref: { runId: string } | { token: number }): Promise<boolean>;
  /**
   * Free every slot of a host: its own recovery, or an operator's `fleet release HOST --force`
   * (another host's slots need `force`). Answers what was freed, for the caller's audit record.
   */
  releaseHost(
    hostId: string,
    options?: { force?: boolean; by?: string; reason?: string },
  ): Promise<{ released: SlotHolder[]; by: string; reason?: string }>;
  /** every held slot, oldest first, renewing or stale */
  list(): Promise<SlotStatus[]>;
}

const slotRow = z.object({
  token: z.coerce.number().int().positive(),
  host_id: z.string(),
  run_id: z.string(),
  acquired_at: z.date(),
  renewed_at: z.date(),
});

const holderOf = (row: unknown): SlotHolder => {
  const r = slotRow.parse(row);
  return { hostId: r.host_id, runId: r.run_id, token: r.token, acquiredAt: r.acquired_at, renewedAt: r.renewed_at };
};

const COLUMNS = "token, host_id, run_id, acquired_at, renewed_at";
// Conflicts with itself, not with plain reads: acquirers take turns while `fleet status` reads on.
const LOCK_SLOTS = "LOCK TABLE slots IN SHARE ROW EXCLUSIVE MODE";
const SEEN = "INSERT INTO hosts (host_id) VALUES ($1) ON CONFLICT (host_id) DO UPDATE SET last_seen = now()";

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}

/**
 * Fleet-wide maintenance slots: a counting semaphore of `maxConcurrent` rows in the `slots`
 * table, each with a fencing token from `fencing_token_seq`. A slot is freed by its run's end,
 * its host's recovery or an operator's forced release — never by time: a holder that stopped
 * renewing is only shown as stale.
 */
export function createFleetSlots(deps: FleetSlotsDeps): FleetSlots {
  const { pool, hostId, maxConcurrent } = deps;
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1)
    throw new RangeError(`maxConcurrent must be a positive integer, got ${maxConcurrent}`);
  const staleAfter = deps.staleAfterSeconds ?? 60;

  const acquire = (runId: string): Promise<AcquireResult> =>
    inTransaction(pool, async (client) => {
      await client.query(LOCK_SLOTS);
      await client.query(SEEN, [hostId]);
      const own = await client.query(`SELECT ${COLUMNS} FROM slots WHERE host_id = $1 AND run_id = $2`, [hostId, runId]);
      if (own.rows[0] !== undefined) return { ok: true, token: holderOf(own.rows[0]).token, reacquired: true };
      const held = await client.query(`SELECT ${COLUMNS} FROM slots ORDER BY token`);
      if (held.rows.length >= maxConcurrent) return { ok: false, maxConcurrent, holders: held.rows.map(holderOf) };
      const taken = await client.query(`INSERT INTO slots (host_id, run_id) VALUES ($1, $2) RETURNING ${COLUMNS}`, [hostId, runId]);
      return { ok: true, token: holderOf(taken.rows[0]).token, reacquired: false };
    });

  const renew = async (token: number): Promise<boolean> => {
    // One statement a heartbeat: the slot's renewal and the host's last-seen time together.
    const result = await query(
      pool,
      `WITH renewed AS (UPDATE slots SET renewed_at = now() WHERE token = $1 AND host_id = $2 RETURNING token),
            seen AS (INSERT INTO hosts (host_id) VALUES ($2) ON CONFLICT (host_id) DO UPDATE SET last_seen = now() RETURNING host_id)
       SELECT (SELECT count(*) FROM renewed)::int AS renewed, (SELECT count(*) FROM seen)::int AS seen`,
      [token, hostId],
    );
    return (result.rows[0] as { renewed: number }).renewed === 1;
  };

  return {
    hostId,
    maxConcurrent,
    acquire,
    renew,

    async acquireWaiting(runId, options) {
      const deadline = Date.now() + options.waitSeconds * 1000;
      const pollMs = options.pollMs ?? 1000;
      for (;;) {
        const result = await acquire(runId);
        if (result.ok || Date.now() >= deadline || options.signal?.aborted) return result;
        // jitter: hosts polling in step would otherwise always meet
        await sleep(Math.min(pollMs * (0.5 + Math.random()), Math.max(0, deadline - Date.now())), options.signal);
      }
    },

    keepRenewing(token, options) {
      let stopped = false;
      let timer: NodeJS.Timeout | undefined;
      let inFlight: Promise<void> = Promise.resolve();
      const tick = async () => {
        try {
          if (await renew(token)) return schedule();
          stopped = true;
          options.onLost();
        } catch (error) {
          options.onError?.(error);
          schedule();
        }
      };
      function schedule() {
        if (stopped) return;
        timer = setTimeout(() => {
          inFlight = tick();
        }, options.everyMs);
      }
      schedule();
      return {
        async stop() {
          stopped = true;
          clearTimeout(timer);
          await inFlight;
        },
      };
    },

    async assertHeld(token) {
      const result = await query(pool, "SELECT 1 FROM slots WHERE token = $1 AND host_id = $2", [token, hostId]);
      if (result.rowCount !== 1) throw new FleetSlotLostError(hostId, token);
    },

    async release(ref) {
      const result =
        "token" in ref
          ? await query(pool, "DELETE FROM slots WHERE token = $1 AND host_id = $2", [ref.token, hostId])
          : await query(pool, "DELETE FROM slots WHERE run_id = $1 AND host_id = $2", [ref.runId, hostId]);
      return (result.rowCount ?? 0) > 0;
    },

    async releaseHost(target, options = {}) {
      const by = options.by ?? hostId;
      if (target !== hostId && options.force !== true) throw new FleetReleaseRefusedError(target, hostId);
      const result = await query(pool, `DELETE FROM slots WHERE host_id = $1 RETURNING ${COLUMNS}`, [target]);
      return {
        released: result.rows.map(holderOf).sort((a, b) => a.token - b.token),
        by,
        ...(options.reason ? { reason: options.reason } : {}),
      };
    },

    async list() {
      const result = await query(
        pool,
        `SELECT ${COLUMNS}, extract(epoch FROM now() - renewed_at)::float8 AS since FROM slots ORDER BY token`,
      );
      return result.rows.map((row) => {
        const holder = holderOf(row);
        const since = Math.max(0, z.number().parse(row.since));
        return {
          ...holder,
          renewing: since <= staleAfter,
          secondsSinceRenewal: Math.round(since * 10) / 10,
          releaseCommand: `gpu-canary fleet release ${holder.hostId} --force`,
        };
      });
    },
  };
}
