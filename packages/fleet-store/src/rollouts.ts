import { randomBytes } from "node:crypto";
import { GpuCanaryError, errnoCode } from "@gpu-canary/errors";
import type pg from "pg";
import * as z from "zod";
import { inTransaction, query } from "./connection.ts";

export const ROLLOUT_STATES = ["running", "paused", "done"] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const ROLLOUT_HOST_STATES = ["pending", "assigned", "applied", "rolled_back", "failed", "skipped", "refused"] as const;
export type RolloutHostState = (typeof ROLLOUT_HOST_STATES)[number];

/** What a host's daemon says of its try: `refused` keeps its place (a gate said not now), `skipped` gives it up. */
export type RolloutResult = "applied" | "rolled_back" | "failed" | "refused" | "skipped";

export interface RolloutHost {
  hostId: string;
  position: number;
  state: RolloutHostState;
  reason: string | null;
  updatedAt: Date;
}

export interface Rollout {
  id: string;
  runId: string;
  fromHost: string;
  wave: number;
  /** after a host applied it, how long the next hosts wait before they take their turn */
  soakSeconds: number;
  /** while that wait lasts: when it ends (the latest apply plus the soak); else null */
  waitsUntil: Date | null;
  state: RolloutState;
  stateReason: string | null;
  promotion: Record<string, unknown>;
  createdAt: Date;
  updatedAt: Date;
  hosts: RolloutHost[];
}

/** A host's part in a running rollout: the promotion its daemon applies at its next window. */
export interface RolloutAssignment {
  rolloutId: string;
  runId: string;
  fromHost: string;
  promotion: Record<string, unknown>;
  state: "assigned" | "refused";
}

const rolloutRow = z.object({
  id: z.string(),
  run_id: z.string(),
  from_host: z.string(),
  wave: z.number().int(),
  soak_seconds: z.number().int(),
  waits_until: z.date().nullable(),
  state: z.enum(ROLLOUT_STATES),
  state_reason: z.string().nullable(),
  promotion: z.record(z.string(), z.unknown()),
  created_at: z.date(),
  updated_at: z.date(),
});
const hostRow = z.object({
  host_id: z.string(),
  position: z.number().int(),
  state: z.enum(ROLLOUT_HOST_STATES),
  reason: z.string().nullable(),
  updated_at: z.date(),
});

/** A rollout of this promotion is running already: a second would assign its hosts twice. */
export class RolloutRunningError extends GpuCanaryError {
  constructor(runId: string) {
    super("ROLLOUT_RUNNING", `a rollout of promotion ${runId} is running already`, {
      kind: "refused",
      hint: `\`gpu-canary fleet rollout status ${runId}\` shows where it stands; a new one can start once it is paused or done`,
      details: { run_id: runId },
    });
  }
}

/** No rollout has this id, or none is of this run id. */
export class RolloutNotFoundError extends GpuCanaryError {
  constructor(what: string | undefined) {
    super("ROLLOUT_NOT_FOUND", what === undefined ? "no rollout was started yet" : `no rollout ${what}`, {
      kind: "usage",
      hint: "start one with `gpu-canary fleet rollout RUN_ID`; `gpu-canary fleet rollout status` shows the latest",
      details: { rollout: what ?? null },
    });
  }
}

export interface StartRolloutOptions {
  runId: string;
  /** the host the promotion was proven on (its doc's host) */
  fromHost: string;
  /** hosts applying at once; default 1 */
  wave?: number;
  /** after a host applied it, how long the next hosts wait before they take their turn; default 0 */
  soakSeconds?: number;
  /** the promotion's JSON, as its file holds it */
  promotion: Record<string, unknown>;
  /**
   * What differs between the promotion's fingerprint and a host's published one (hosts.info.fingerprint,
   * undefined when the host published none): empty when the host is the same. The caller knows fingerprints.
   */
  differs: (hostFingerprint: unknown) => string[];
  /** the id, for tests; default `ro-<UTC timestamp>-<random>` */
  id?: string;
  now?: Date;
}

/** A soak of at most 30 days: KLR_APPLY_WATCH_HOURS' own bound. */
export const MAX_SOAK_SECONDS = 720 * 3600;

/** While a rollout soaks: its latest apply plus the soak, when that is still ahead (the database's clock). */
const WAITS_UNTIL = `(SELECT CASE WHEN max(a.updated_at) + make_interval(secs => r.soak_seconds) > now()
    THEN max(a.updated_at) + make_interval(secs => r.soak_seconds) END
  FROM rollout_hosts a WHERE a.rollout_id = r.id AND a.state = 'applied')`;

function newId(now: Date): string {
  return `ro-${now
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z")}-${randomBytes(3).toString("hex")}`;
}

/**
 * Assign pending hosts, in order, until `wave` hold a place (assigned or refused); the rollout is done
 * when none is pending or holds a place. Runs inside the caller's transaction, the rollout locked.
 */
async function advance(client: pg.PoolClient, id: string, wave: number): Promise<void> {
  const counts = await client.query<{ state: string; n: string }>(
    "SELECT state, count(*) AS n FROM rollout_hosts WHERE rollout_id = $1 GROUP BY state",
    [id],
  );
  const count = (state: string) => Number(counts.rows.find((r) => r.state === state)?.n ?? 0);
  const holding = count("assigned") + count("refused");
  const free = wave - holding;
  if (free > 0 && count("pending") > 0)
    await client.query(
      `UPDATE rollout_hosts SET state = 'assigned', reason = NULL, updated_at = now()
       WHERE rollout_id = $1 AND host_id IN (
         SELECT host_id FROM rollout_hosts WHERE rollout_id = $1 AND state = 'pending' ORDER BY position LIMIT $2)`,
      [id, free],
    );
  else if (holding === 0 && count("pending") === 0)
    await client.query(
      "UPDATE rollouts SET state = 'done', state_reason = 'every host applied it or was skipped', updated_at = now() WHERE id = $1",
      [id],
    );
}

/**
 * Start a rollout of a promotion over every host of the fleet (one transaction): a host whose published
 * fingerprint differs from the promotion's, or that published none, is skipped with the differences as
 * its reason; the others are pending in host order (the proving host first: its apply is what the
 * promotion is on that host too), and the first `wave` are assigned. Refused (ROLLOUT_RUNNING) while
 * a rollout of the same promotion runs.
 */
export async function startRollout(pool: pg.Pool, options: StartRolloutOptions): Promise<Rollout> {
  const wave = options.wave ?? 1;
  if (!Number.isInteger(wave) || wave < 1) throw new RangeError(`wave must be a whole number of hosts, at least 1; got ${wave}`);
  const soak = options.soakSeconds ?? 0;
  if (!Number.isInteger(soak) || soak < 0 || soak > MAX_SOAK_SECONDS)
    throw new RangeError(`soak must be a whole number of seconds from 0 to ${MAX_SOAK_SECONDS}; got ${soak}`);
  const now = options.now ?? new Date();
  const id = options.id ?? newId(now);
  try {
    await inTransaction(pool, async (client) => {
      await client.query(
        "INSERT INTO rollouts (id, run_id, from_host, wave, soak_seconds, promotion, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
        [id, options.runId, options.fromHost, wave, soak, JSON.stringify(options.promotion), now],
      );
      const hosts = await client.query<{ host_id: string; fingerprint: unknown }>(
        "SELECT host_id, info -> 'fingerprint' AS fingerprint FROM hosts ORDER BY host_id = $1 DESC, host_id",
        [options.fromHost],
      );
      let position = 0;
      for (const host of hosts.rows) {
        const differences = options.differs(host.fingerprint ?? undefined);
        position += 1;
        await client.query(
          "INSERT INTO rollout_hosts (rollout_id, host_id, position, state, reason, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
          [id, host.host_id, position, differences.length > 0 ? "skipped" : "pending", differences.join("; ") || null, now],
        );
      }
      await advance(client, id, wave);
    });
  } catch (error) {
    if (errnoCode(error) === "23505") throw new RolloutRunningError(options.runId);
    throw error;
  }
  return rolloutStatus(pool, id);
}

/**
 * This host's part in a running rollout (the oldest, if several), with the promotion; null when it has
 * none, or while the rollout soaks after its latest apply (the host's turn comes when the soak ends).
 */
export async function assignmentFor(pool: pg.Pool, hostId: string): Promise<RolloutAssignment | null> {
  const result = await query<{ id: string; run_id: string; from_host: string; promotion: Record<string, unknown>; state: string }>(
    pool,
    `SELECT r.id, r.run_id, r.from_host, r.promotion, h.state FROM rollout_hosts h JOIN rollouts r ON r.id = h.rollout_id
     WHERE h.host_id = $1 AND h.state IN ('assigned', 'refused') AND r.state = 'running' AND ${WAITS_UNTIL} IS NULL
     ORDER BY r.created_at, r.id LIMIT 1`,
    [hostId],
  );
  const row = result.rows[0];
  if (!row) return null;
  return {
    rolloutId: row.id,
    runId: row.run_id,
    fromHost: row.from_host,
    promotion: row.promotion,
    state: row.state === "refused" ? "refused" : "assigned",
  };
}

/**
 * The rollouts whose promotion this host applied and still holds as applied: what its daemon watches,
 * to tell the rollout when production here went back later (reportResult's rolled_back).
 */
export async function appliedRolloutsOf(pool: pg.Pool, hostId: string): Promise<{ rolloutId: string; runId: string }[]> {
  const result = await query<{ id: string; run_id: string }>(
    pool,
    `SELECT r.id, r.run_id FROM rollout_hosts h JOIN rollouts r ON r.id = h.rollout_id
     WHERE h.host_id = $1 AND h.state = 'applied' ORDER BY r.created_at, r.id`,
    [hostId],
  );
  return result.rows.map((row) => ({ rolloutId: row.id, runId: row.run_id }));
}

/**
 * A host's daemon says how its try went (one transaction, the rollout locked: two hosts reporting at
 * once never assign more than `wave`). applied or skipped: the next pending hosts are assigned, and the
 * rollout is done when none is left. rolled_back or failed: the rollout is paused and nothing more is
 * assigned — the promotion did not hold on a host that looked the same, an operator looks first.
 * refused: a gate (window, budget, rate limit, lock, fleet slot) said not now; the host keeps its place
 * and tries at its next window, since skipping it would leave it behind for a passing reason.
 * rolled_back of a host that applied: its production went back later (an out-of-memory event within
 * KLR_APPLY_WATCH_HOURS, or an operator's rollback); the rollout is paused as at an apply that rolled
 * back, a done one too, so `fleet rollout status` shows why.
 * A report for a host that holds no place (a rollout paused meanwhile) records nothing and answers false.
 */
export async function reportResult(
  pool: pg.Pool,
  rolloutId: string,
  hostId: string,
  result: RolloutResult,
  reason: string,
): Promise<boolean> {
  return inTransaction(pool, async (client) => {
    const rollout = await client.query<{ wave: number; state: string }>("SELECT wave, state FROM rollouts WHERE id = $1 FOR UPDATE", [
      rolloutId,
    ]);
    const row = rollout.rows[0];
    if (!row) throw new RolloutNotFoundError(rolloutId);
    const host = await client.query<{ state: string }>("SELECT state FROM rollout_hosts WHERE rollout_id = $1 AND host_id = $2", [
      rolloutId,
      hostId,
    ]);
    const was = host.rows[0]?.state;
    if (!(was === "assigned" || was === "refused" || (was === "applied" && result === "rolled_back"))) return false;
    await client.query("UPDATE rollout_hosts SET state = $3, reason = $4, updated_at = now() WHERE rollout_id = $1 AND host_id = $2", [
      rolloutId,
      hostId,
      result,
      reason,
    ]);
    if (result === "rolled_back" || result === "failed") {
      const why =
        was === "applied" ? "rolled back after its apply" : result === "rolled_back" ? "its apply rolled back" : "its apply failed";
      if (row.state !== "paused")
        await client.query("UPDATE rollouts SET state = 'paused', state_reason = $2, updated_at = now() WHERE id = $1", [
          rolloutId,
          `${hostId}: ${why}: ${reason}`,
        ]);
    } else if (result !== "refused" && row.state === "running") await advance(client, rolloutId, row.wave);
    return true;
  });
}

/**
 * A paused rollout runs again: the hosts that rolled back or failed are settled as they are (they
 * are not tried again), the next pending hosts are assigned. Answers the rollout.
 */
export async function resumeRollout(pool: pg.Pool, rolloutId: string, reason: string): Promise<Rollout> {
  try {
    await inTransaction(pool, async (client) => {
      const found = await client.query<{ wave: number; state: string }>("SELECT wave, state FROM rollouts WHERE id = $1 FOR UPDATE", [
        rolloutId,
      ]);
      const row = found.rows[0];
      if (!row) throw new RolloutNotFoundError(rolloutId);
      if (row.state !== "paused") return;
      await client.query("UPDATE rollouts SET state = 'running', state_reason = $2, updated_at = now() WHERE id = $1", [rolloutId, reason]);
      await advance(client, rolloutId, row.wave);
    });
  } catch (error) {
    if (errnoCode(error) === "23505") {
      const runId = await query<{ run_id: string }>(pool, "SELECT run_id FROM rollouts WHERE id = $1", [rolloutId]);
      throw new RolloutRunningError(runId.rows[0]?.run_id ?? rolloutId);
    }
    throw error;
  }
  return rolloutStatus(pool, rolloutId);
}

/**
 * A rollout with its hosts: by its id, else the latest rollout of that run id, else (no argument) the
 * latest rollout there is. None: RolloutNotFoundError.
 */
export async function rolloutStatus(pool: pg.Pool, idOrRunId?: string): Promise<Rollout> {
  const found = await query(
    pool,
    idOrRunId === undefined
      ? `SELECT r.*, ${WAITS_UNTIL} AS waits_until FROM rollouts r ORDER BY created_at DESC, id DESC LIMIT 1`
      : `SELECT r.*, ${WAITS_UNTIL} AS waits_until FROM rollouts r WHERE id = $1 OR run_id = $1
         ORDER BY (id = $1) DESC, created_at DESC, id DESC LIMIT 1`,
    idOrRunId === undefined ? [] : [idOrRunId],
  );
  if (!found.rows[0]) throw new RolloutNotFoundError(idOrRunId);
  const r = rolloutRow.parse(found.rows[0]);
  const hosts = await query(
    pool,
    "SELECT host_id, position, state, reason, updated_at FROM rollout_hosts WHERE rollout_id = $1 ORDER BY position",
    [r.id],
  );
  return {
    id: r.id,
    runId: r.run_id,
    fromHost: r.from_host,
    wave: r.wave,
    soakSeconds: r.soak_seconds,
    waitsUntil: r.waits_until,
    state: r.state,
    stateReason: r.state_reason,
    promotion: r.promotion,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    hosts: hosts.rows.map((row) => {
      const h = hostRow.parse(row);
      return { hostId: h.host_id, position: h.position, state: h.state, reason: h.reason, updatedAt: h.updated_at };
    }),
  };
}

/** A promotion some host copied to the fleet's database (the `promotions` table), or null. */
export async function fleetPromotion(pool: pg.Pool, runId: string): Promise<{ hostId: string; doc: Record<string, unknown> } | null> {
  const result = await query<{ host_id: string; doc: Record<string, unknown> }>(
    pool,
    "SELECT host_id, doc FROM promotions WHERE run_id = $1",
    [runId],
  );
  const row = result.rows[0];
  return row ? { hostId: row.host_id, doc: row.doc } : null;
}
