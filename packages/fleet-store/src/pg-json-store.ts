import type { JsonStore } from "@gpu-canary/policy";
import { type RawFile, type ReadResult, StateUnreadableError, parseState } from "@gpu-canary/state-file";
import type pg from "pg";
import type { z } from "zod";
import { describeDatabase, inTransaction, query } from "./connection.ts";

export interface PgJsonStoreOptions<T> {
  /** whose document: budgets and rate limits are per host */
  hostId: string;
  /** e.g. "budget/20261128" or "rate-limits" */
  key: string;
  schema: z.ZodType<T>;
  /** what to do when the stored document is unreadable */
  hint?: string;
}

interface DocRow {
  text: string | null;
  updated_ms: string | number;
}

const defaultHint = "repair the document in the fleet database by hand; gpu-canary will not guess its content";

/**
 * A JsonStore on the fleet database's `documents` table. `update` locks the document's row
 * (a placeholder row is inserted first when it is missing, so two first writers also take
 * turns), runs `decide`, writes what it says and commits: concurrent updates from any number
 * of hosts and processes lose nothing. A stored document that fails the schema is
 * "unreadable" with its reason, never reset.
 */
export function createPgJsonStore<T>(pool: pg.Pool, options: PgJsonStoreOptions<T>): JsonStore<T> {
  const location = `${describeDatabase(pool)} documents[${options.hostId}/${options.key}]`;
  const hint = options.hint ?? defaultHint;

  const toRead = (row: DocRow | undefined): ReadResult<T> => {
    if (row === undefined || row.text === null) return { status: "missing" };
    const parsed = parseState(row.text, options.schema);
    if (!parsed.ok) return { status: "unreadable", error: new StateUnreadableError(location, parsed.reason, hint), text: row.text };
    // RawFile's identity fields mean nothing here; mtime is the row's update time, for "how old".
    const file: RawFile = {
      text: row.text,
      ino: 0n,
      mtimeNs: BigInt(Math.round(Number(row.updated_ms))) * 1_000_000n,
      size: BigInt(Buffer.byteLength(row.text)),
    };
    return { status: "ok", value: parsed.value, file };
  };

  const select =
    "SELECT doc::text AS text, (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms FROM documents WHERE host_id = $1 AND key = $2";

  return {
    location,
    async read() {
      const result = await query<DocRow>(pool, select, [options.hostId, options.key]);
      return toRead(result.rows[0]);
    },
    async update(decide) {
      return inTransaction(pool, async (client) => {
        await client.query("INSERT INTO documents (host_id, key, doc) VALUES ($1, $2, NULL) ON CONFLICT DO NOTHING", [
          options.hostId,
          options.key,
        ]);
        const current = await client.query<DocRow>(`${select} FOR UPDATE`, [options.hostId, options.key]);
        const step = await decide(toRead(current.rows[0]));
        if ("write" in step) {
          // what is written must read back: the schema checks it before it leaves the host
          const doc = JSON.stringify(options.schema.parse(step.write));
          await client.query("UPDATE documents SET doc = $3::jsonb, updated_at = now() WHERE host_id = $1 AND key = $2", [
            options.hostId,
            options.key,
            doc,
          ]);
        }
        return step.answer;
      });
    },
  };
}
