import { readFile } from "node:fs/promises";
import { dayFile, listDays } from "@gpu-canary/audit-feed";
import { errnoCode } from "@gpu-canary/errors";
import type pg from "pg";
import * as z from "zod";
import { inTransaction, query } from "./connection.ts";

/** Lines inserted per statement. */
const CHUNK = 500;

export interface SyncAuditOptions {
  /** KLR_HOST_ID: whose lines these are */
  hostId: string;
  /** the host's epochs folder ($KLR_HOME/out/orchestration/epochs) */
  auditDir: string;
}

/**
 * The file's complete lines (a last one without its newline is a writer mid-way: left for next
 * time); null when it is gone, or when it has no more than `known` lines (counted on the bytes,
 * without decoding: most days were copied before).
 */
async function linesAfter(dir: string, day: string, known: number): Promise<string[] | null> {
  let bytes: Buffer;
  try {
    bytes = await readFile(dayFile(dir, day));
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return null; // pruned meanwhile
    throw error;
  }
  let newlines = 0;
  for (let at = bytes.indexOf(10); at !== -1; at = bytes.indexOf(10, at + 1)) newlines += 1;
  if (newlines <= known) return null;
  const lines = bytes.toString("utf8").split("\n");
  lines.pop();
  // trailing blank lines have nothing to copy: they never make a day look unfinished
  while (lines.length > 0 && (lines.at(-1) ?? "").trim() === "") lines.pop();
  return lines.length > known ? lines : null;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * A line as the database stores it: its JSON object, or `{"unparsed": text}` for a line that is
 * not one (or that jsonb cannot hold: a NUL or a lone surrogate), so nothing is lost.
 */
function recordOf(line: string): { json: string; ts: unknown } {
  try {
    const value: unknown = JSON.parse(line);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      const json = JSON.stringify(value);
      // jsonb refuses \u0000 and unpaired surrogates, which JSON.stringify writes as \udXXX escapes
      if (!/\\u0000|\\ud[89a-f]/i.test(json)) return { json, ts: (value as { ts?: unknown }).ts };
    }
  } catch {
    // not JSON: kept as text below
  }
  const text = line.replace(/\0/g, "\ufffd").replace(LONE_SURROGATE, "\ufffd");
  return { json: JSON.stringify({ unparsed: text }), ts: undefined };
}

function instantOf(ts: unknown): Date | null {
  if (typeof ts !== "string") return null;
  const t = Date.parse(ts);
  return Number.isFinite(t) ? new Date(t) : null;
}

const knownRow = z.object({ day: z.string(), max_line: z.coerce.number().int() });
const dayRow = z.object({ max_line: z.coerce.number().int(), max_at: z.date().nullable() });

/**
 * Copy this host's audit lines that the fleet database lacks into its `audit` table: each day
 * file in one transaction under an advisory lock keyed by the host, the lines after the last
 * one the database holds for that day, `ON CONFLICT DO NOTHING` — so it may run any number of
 * times, from several processes of the host at once, and copies each line once. A line that is
 * not a JSON object is kept as `{"unparsed": text}`; a line without a valid `ts` takes the time
 * of the last line before it. The local files stay the primary record; nothing is ever deleted
 * from the database. Answers how many lines it copied; the database away throws
 * FLEET_DB_UNREACHABLE (the caller decides what that means).
 */
export async function syncAudit(pool: pg.Pool, options: SyncAuditOptions): Promise<number> {
  const { hostId, auditDir } = options;
  const days = await listDays(auditDir);
  if (days.length === 0) return 0;
  // One look first, so that days already copied cost no transaction.
  const known = new Map(
    (await query(pool, "SELECT day, max(line_no) AS max_line FROM audit WHERE host_id = $1 GROUP BY day", [hostId])).rows.map((row) => {
      const r = knownRow.parse(row);
      return [r.day, r.max_line] as const;
    }),
  );
  let copied = 0;
  for (const day of days) {
    const lines = await linesAfter(auditDir, day, known.get(day) ?? 0);
    if (lines === null) continue;
    copied += await inTransaction(pool, async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext('gpu-canary/audit'), hashtext($1))", [hostId]);
      const have = dayRow.parse(
        (
          await client.query("SELECT coalesce(max(line_no), 0) AS max_line, max(at) AS max_at FROM audit WHERE host_id = $1 AND day = $2", [
            hostId,
            day,
          ])
        ).rows[0],
      );
      let previous = have.max_at ?? new Date(`${day.slice(0, 4)}-${day.slice(4, 6)}-${day.slice(6, 8)}T00:00:00Z`);
      const lineNos: number[] = [];
      const ats: string[] = [];
      const records: string[] = [];
      for (let index = Math.max(0, have.max_line); index < lines.length; index += 1) {
        const line = lines[index] ?? "";
        if (line.trim() === "") continue;
        const { json, ts } = recordOf(line);
        previous = instantOf(ts) ?? previous;
        lineNos.push(index + 1);
        ats.push(previous.toISOString());
        records.push(json);
      }
      let inserted = 0;
      for (let start = 0; start < lineNos.length; start += CHUNK) {
        const result = await client.query(
          `INSERT INTO audit (host_id, day, line_no, at, record)
           SELECT $1, $2, l.line_no, l.at, l.record
           FROM unnest($3::integer[], $4::timestamptz[], $5::jsonb[]) AS l(line_no, at, record)
           ON CONFLICT (host_id, day, line_no) DO NOTHING`,
          [hostId, day, lineNos.slice(start, start + CHUNK), ats.slice(start, start + CHUNK), records.slice(start, start + CHUNK)],
        );
        inserted += result.rowCount ?? 0;
      }
      return inserted;
    });
  }
  return copied;
}

export interface FleetAuditFilter {
  /** one host's events (KLR_HOST_ID); every host's when absent */
  hostId?: string;
  /** inclusive */
  since?: Date;
  /** exclusive */
  until?: Date;
  event?: string;
  runId?: string;
}

export interface FleetAuditEvent {
  hostId: string;
  day: string;
  lineNo: number;
  at: Date;
  /** the line as the host wrote it (a JSON object), or `{"unparsed": text}` */
  record: Record<string, unknown>;
}

const auditRow = z.object({
  host_id: z.string(),
  day: z.string(),
  line_no: z.coerce.number().int(),
  at: z.date(),
  record: z.unknown(),
});

/** The fleet's audit trail from the database: every host's (or one host's) events in time order. */
export async function queryAudit(pool: pg.Pool, filter: FleetAuditFilter = {}): Promise<FleetAuditEvent[]> {
  const where: string[] = [];
  const values: unknown[] = [];
  const add = (condition: (placeholder: string) => string, value: unknown) => {
    values.push(value);
    where.push(condition(`$${values.length}`));
  };
  if (filter.hostId !== undefined) add((p) => `host_id = ${p}`, filter.hostId);
  if (filter.since !== undefined) add((p) => `at >= ${p}`, filter.since);
  if (filter.until !== undefined) add((p) => `at < ${p}`, filter.until);
  if (filter.event !== undefined) add((p) => `record->>'event' = ${p}`, filter.event);
  if (filter.runId !== undefined) add((p) => `record->>'run_id' = ${p}`, filter.runId);
  const result = await query(
    pool,
    `SELECT host_id, day, line_no, at, record FROM audit
     ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
     ORDER BY at, host_id, day, line_no`,
    values,
  );
  return result.rows.map((row) => {
    const r = auditRow.parse(row);
    const record =
      typeof r.record === "object" && r.record !== null && !Array.isArray(r.record)
        ? (r.record as Record<string, unknown>)
        : { unparsed: JSON.stringify(r.record) };
    return { hostId: r.host_id, day: r.day, lineNo: r.line_no, at: r.at, record };
  });
}
