import type pg from "pg";
import * as z from "zod";
import { query } from "./connection.ts";

/**
 * The tables a host copies its documents into, each with its key column. Fixed here, never taken
 * from input: the names are written into the statement.
 */
const TABLES = {
  promotions: "run_id",
  intents: "id",
} as const;
export type HostDocTable = keyof typeof TABLES;

export interface HostDoc {
  key: string;
  doc: Record<string, unknown>;
  /** the doc's `created_at` when it has a valid one; the database's now() otherwise */
  createdAt: string | null;
}

export interface SyncHostDocsResult {
  /** rows inserted or changed (a state change counts) */
  written: number;
  /** keys the database already holds for another host: left as they are */
  otherHost: string[];
}

/** A doc's `created_at` as an ISO instant, or null when it has none or an unparsable one. */
export function createdAtOf(doc: { created_at?: unknown }): string | null {
  if (typeof doc.created_at !== "string") return null;
  const t = Date.parse(doc.created_at);
  return Number.isFinite(t) ? new Date(t).toISOString() : null;
}

const resultRow = z.object({ written: z.number().int(), other_host: z.array(z.string()) });

/**
 * Upsert a host's documents into `table`, one row per key: a new one is inserted, a changed one
 * replaces its row, an unchanged one is left alone. A key the database holds for another host is
 * never taken over: it is answered in `otherHost`. Nothing is deleted.
 */
export async function syncHostDocs(
  pool: pg.Pool,
  table: HostDocTable,
  hostId: string,
  docs: readonly HostDoc[],
): Promise<SyncHostDocsResult> {
  if (docs.length === 0) return { written: 0, otherHost: [] };
  const key = TABLES[table];
  const result = await query(
    pool,
    `WITH incoming AS (
       SELECT d.key, d.doc, d.created_at FROM unnest($2::text[], $3::jsonb[], $4::timestamptz[]) AS d(key, doc, created_at)
     ), upserted AS (
       INSERT INTO ${table} (${key}, host_id, doc, created_at)
       SELECT key, $1, doc, coalesce(created_at, now()) FROM incoming
       ON CONFLICT (${key}) DO UPDATE SET doc = EXCLUDED.doc
         WHERE ${table}.host_id = EXCLUDED.host_id AND ${table}.doc IS DISTINCT FROM EXCLUDED.doc
       RETURNING ${key}
     )
     SELECT (SELECT count(*) FROM upserted)::int AS written,
            coalesce((SELECT array_agg(t.${key} ORDER BY t.${key}) FROM ${table} t JOIN incoming i ON t.${key} = i.key WHERE t.host_id <> $1), '{}') AS other_host`,
    [hostId, docs.map((d) => d.key), docs.map((d) => JSON.stringify(d.doc)), docs.map((d) => d.createdAt)],
  );
  const row = resultRow.parse(result.rows[0]);
  return { written: row.written, otherHost: row.other_host };
}
