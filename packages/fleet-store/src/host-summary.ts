import type pg from "pg";
import * as z from "zod";
import { query } from "./connection.ts";
import { touchHost } from "./hosts.ts";
import { type IntentDoc, type SyncIntentsResult, syncIntents } from "./intents.ts";
import { type PromotionDoc, type SyncPromotionsResult, syncPromotions } from "./promotions.ts";

/** Production's applied settings as a host publishes them (its applied.json, in short). */
export interface HostApplied {
  vllm_memory_util: number | null;
  whisper_model_size: string;
  /** the promotion applied, or null for the settings production had before gpu-canary applied any */
  promotion_run_id: string | null;
  /** since when */
  applied_at: string | null;
}

/** The last run this host ended, from its audit trail's last `run_finished`. */
export interface HostLastRun {
  run_id: string | null;
  at: string;
  /** the run's verdict as audited: passed, failed, inconclusive, refused, error… */
  status: string | null;
  /** predictive, canary, apply, rollback */
  mode: string | null;
}

export interface PublishHostOptions {
  hostId: string;
  /** applied.json in short; null when nothing was applied (or it could not be read: say why in `appliedError`) */
  applied: HostApplied | null;
  /** why applied.json could not be read; published so that `fleet status` says so rather than "none" */
  appliedError?: string | null;
  /** this host's readable promotions */
  promotions: readonly PromotionDoc[];
  /** this host's readable intents, each with its `state` (left out: none synced) */
  intents?: readonly IntentDoc[];
}

export interface PublishHostResult {
  promotions: SyncPromotionsResult;
  intents: SyncIntentsResult;
  lastRun: HostLastRun | null;
}

/** Only what the summary needs of an applied.json (or any object shaped like one). */
export function hostAppliedOf(applied: {
  vllm_memory_util: number | null;
  whisper_model_size: string;
  promotion_run_id: string | null;
  applied_at: string | null;
}): HostApplied {
  return {
    vllm_memory_util: applied.vllm_memory_util,
    whisper_model_size: applied.whisper_model_size,
    promotion_run_id: applied.promotion_run_id,
    applied_at: applied.applied_at,
  };
}

const lastRunRow = z.object({ at: z.date(), record: z.record(z.string(), z.unknown()) });
const text = (value: unknown) => (typeof value === "string" ? value : null);

/**
 * The host's last run as the fleet's copy of its audit trail has it: its newest `run_finished`
 * (every way out of a run writes one, recovery of a crashed run included). Read after the trail
 * was copied (`syncAudit`), it is the same answer as the host's own files, for one index scan.
 */
export async function lastRunOf(pool: pg.Pool, hostId: string): Promise<HostLastRun | null> {
  const result = await query(
    pool,
    `SELECT at, record FROM audit WHERE host_id = $1 AND record->>'event' = 'run_finished'
     ORDER BY at DESC, day DESC, line_no DESC LIMIT 1`,
    [hostId],
  );
  const row = result.rows[0];
  if (row === undefined) return null;
  const r = lastRunRow.parse(row);
  return { run_id: text(r.record.run_id), at: r.at.toISOString(), status: text(r.record.status), mode: text(r.record.mode) };
}

/**
 * What `fleet status` shows of a host, published by the host itself: its promotions into
 * `promotions`, its intents into `intents`, and into its `hosts.info` its applied settings and its last run (read from the
 * audit lines already copied: call it after `syncAudit`). Like `syncAudit`, best effort for the
 * caller: the database away throws FLEET_DB_UNREACHABLE and the next publication catches up.
 */
export async function publishHost(pool: pg.Pool, options: PublishHostOptions): Promise<PublishHostResult> {
  const promotions = await syncPromotions(pool, { hostId: options.hostId, promotions: options.promotions });
  const intents = await syncIntents(pool, { hostId: options.hostId, intents: options.intents ?? [] });
  const lastRun = await lastRunOf(pool, options.hostId);
  await touchHost(pool, options.hostId, {
    applied: options.applied,
    applied_error: options.appliedError ?? null,
    last_run: lastRun,
  });
  return { promotions, intents, lastRun };
}
