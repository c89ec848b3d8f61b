import type pg from "pg";
import * as z from "zod";
import { query } from "./connection.ts";
import { type SyncHostDocsResult, createdAtOf, syncHostDocs } from "./host-docs.ts";

/** An intent as its host's file holds it, plus `state`: the folder it is in (pending, processing, processed, failed). */
export interface IntentDoc {
  id: string;
  state: string;
  kind?: string;
  created_at?: string;
  [key: string]: unknown;
}

export interface SyncIntentsOptions {
  /** KLR_HOST_ID: the host whose work items they are */
  hostId: string;
  /** this host's intents as read from its folders (unreadable files left out by the caller) */
  intents: readonly IntentDoc[];
}

/** `written`: rows inserted or changed (a move to another folder counts); `otherHost`: ids the database holds for another host, left as they are */
export type SyncIntentsResult = SyncHostDocsResult;

/**
 * Upsert this host's intents into `intents`, one row per id, as `syncPromotions` does promotions:
 * new ones inserted, changed ones (a state change, an outcome added) replaced, unchanged ones left
 * alone, another host's id never taken over, nothing deleted.
 */
export async function syncIntents(pool: pg.Pool, options: SyncIntentsOptions): Promise<SyncIntentsResult> {
  const docs = options.intents.map((i) => ({ key: i.id, doc: i, createdAt: createdAtOf(i) }));
  return syncHostDocs(pool, "intents", options.hostId, docs);
}

export interface FleetIntent {
  id: string;
  hostId: string;
  /** the folder it was in when its host last published it */
  state: string;
  /** the doc's `kind` (oom_runtime, manual…); null when it has none */
  kind: string | null;
  createdAt: Date;
  doc: Record<string, unknown>;
}

export interface FleetIntentFilter {
  /** one state or several (`["pending", "processing"]` for the open ones) */
  state?: string | readonly string[];
  hostId?: string;
}

const intentRow = z.object({
  id: z.string(),
  host_id: z.string(),
  state: z.string(),
  kind: z.string().nullable(),
  created_at: z.date(),
  doc: z.record(z.string(), z.unknown()),
});

/** Every host's intents from the database, oldest first. */
export async function listFleetIntents(pool: pg.Pool, filter: FleetIntentFilter = {}): Promise<FleetIntent[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (filter.state !== undefined) {
    values.push(typeof filter.state === "string" ? [filter.state] : [...filter.state]);
    where.push(`doc->>'state' = ANY($${values.length}::text[])`);
  }
  if (filter.hostId !== undefined) {
    values.push(filter.hostId);
    where.push(`host_id = $${values.length}`);
  }
  const result = await query(
    pool,
    `SELECT id, host_id, coalesce(doc->>'state', 'unknown') AS state, doc->>'kind' AS kind, created_at, doc FROM intents
     ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY created_at, id`,
    values,
  );
  return result.rows.map((row) => {
    const r = intentRow.parse(row);
    return { id: r.id, hostId: r.host_id, state: r.state, kind: r.kind, createdAt: r.created_at, doc: r.doc };
  });
}
