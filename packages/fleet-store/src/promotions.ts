import type pg from "pg";
import { z } from "zod";
import { query } from "./connection.ts";

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

export interface SyncPromotionsResult {
  /** rows inserted or changed (a state change counts) */
  written: number;
  /** run ids the database already holds for another host: left as they are */
  otherHost: string[];
}

function createdAtOf(doc: PromotionDoc): string | null {
  if (typeof doc.created_at !== "string") return null;
  const t = Date.parse(doc.created_at);
  return Number.isFinite(t) ? new Date(t).toISOString() : null;
}

/**
 * Upsert this host's promotions into `promotions`, one row per run id: a new one is inserted, a
 * changed one (a state change, a pass added) replaces its row, an unchanged one is left alone. A
 * run id the database holds for another host is never taken over: it is answered in `otherHost`.
 * Nothing is deleted: a promotion file removed by hand stays in the fleet's record.
 */
export async function syncPromotions(pool: pg.Pool, options: SyncPromotionsOptions): Promise<SyncPromotionsResult> {
  const { hostId, promotions } = options;
  if (promotions.length === 0) return { written: 0, otherHost: [] };
  const result = await query(
    pool,
    `WITH incoming AS (
       SELECT p.run_id, p.doc, p.created_at FROM unnest($2::text[], $3::jsonb[], $4::timestamptz[]) AS p(run_id, doc, created_at)
     ), upserted AS (
       INSERT INTO promotions (run_id, host_id, doc, created_at)
       SELECT run_id, $1, doc, coalesce(created_at, now()) FROM incoming
       ON CONFLICT (run_id) DO UPDATE SET doc = EXCLUDED.doc
         WHERE promotions.host_id = EXCLUDED.host_id AND promotions.doc IS DISTINCT FROM EXCLUDED.doc
       RETURNING run_id
     )
     SELECT (SELECT count(*) FROM upserted)::int AS written,
            coalesce((SELECT array_agg(p.run_id ORDER BY p.run_id) FROM promotions p JOIN incoming i USING (run_id) WHERE p.host_id <> $1), '{}') AS other_host`,
    [hostId, promotions.map((p) => p.run_id), promotions.map((p) => JSON.stringify(p)), promotions.map(createdAtOf)],
  );
  const row = z.object({ written: z.number().int(), other_host: z.array(z.string()) }).parse(result.rows[0]);
  return { written: row.written, otherHost: row.other_host };
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
