import type pg from "pg";
import * as z from "zod";
import { query } from "./connection.ts";
import { type SyncHostDocsResult, createdAtOf, syncHostDocs } from "./host-docs.ts";

/** A promotion as its host's file holds it: any JSON object with its `run_id` (its `state` and the rest are kept as they are). */
export interface PromotionDoc {
  run_id: string;
  created_at?: string;
  state?: string;
  [key: string]: unknown;
}

export interface SyncPromotionsOptions {
  /** KLR_HOST_ID: the host that proved them */
  hostId: string;
  /** this host's promotions, as read from its files (unreadable files left out by the caller, never guessed) */
  promotions: readonly PromotionDoc[];
}

/** `written`: rows inserted or changed (a state change counts); `otherHost`: run ids the database holds for another host, left as they are */
export type SyncPromotionsResult = SyncHostDocsResult;

/**
 * Upsert this host's promotions into `promotions`, one row per run id: a new one is inserted, a
 * changed one (a state change, a pass added) replaces its row, an unchanged one is left alone. A
 * run id the database holds for another host is never taken over: it is answered in `otherHost`.
 * Nothing is deleted: a promotion file removed by hand stays in the fleet's record.
 */
export async function syncPromotions(pool: pg.Pool, options: SyncPromotionsOptions): Promise<SyncPromotionsResult> {
  const docs = options.promotions.map((p) => ({ key: p.run_id, doc: p, createdAt: createdAtOf(p) }));
  return syncHostDocs(pool, "promotions", options.hostId, docs);
}

export interface FleetPromotion {
  runId: string;
  hostId: string;
  /** the doc's `state`; `proposed` when it has none (files written before states were all proposals) */
  state: string;
  createdAt: Date;
  doc: Record<string, unknown>;
}

export interface FleetPromotionFilter {
  /** one state (`proposed` for the pending ones) or several */
  state?: string | readonly string[];
  hostId?: string;
}

const promotionRow = z.object({
  run_id: z.string(),
  host_id: z.string(),
  state: z.string(),
  created_at: z.date(),
  doc: z.record(z.string(), z.unknown()),
});

/** Every host's promotions from the database, oldest first. */
export async function listFleetPromotions(pool: pg.Pool, filter: FleetPromotionFilter = {}): Promise<FleetPromotion[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (filter.state !== undefined) {
    values.push(typeof filter.state === "string" ? [filter.state] : [...filter.state]);
    where.push(`coalesce(doc->>'state', 'proposed') = ANY($${values.length}::text[])`);
  }
  if (filter.hostId !== undefined) {
    values.push(filter.hostId);
    where.push(`host_id = $${values.length}`);
  }
  const result = await query(
    pool,
    `SELECT run_id, host_id, coalesce(doc->>'state', 'proposed') AS state, created_at, doc FROM promotions
     ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY created_at, run_id`,
    values,
  );
  return result.rows.map((row) => {
    const r = promotionRow.parse(row);
    return { runId: r.run_id, hostId: r.host_id, state: r.state, createdAt: r.created_at, doc: r.doc };
  });
}
