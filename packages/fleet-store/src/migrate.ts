import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import * as z from "zod";
import { describeDatabase, inTransaction, query } from "./connection.ts";
import { FleetSchemaMissingError, FleetSchemaNewerError } from "./errors.ts";

/** The SQL files ship with the package: `migrations/` beside `src/` and `dist/`. */
export const MIGRATIONS_DIR = join(import.meta.dirname, "..", "migrations");

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

const FILE = /^(\d{3})-([a-z0-9-]+)\.sql$/;

/** The migrations in order: `NNN-name.sql`, numbered 1, 2, 3… without a gap. */
export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  const migrations = readdirSync(dir)
    .flatMap((file) => {
      const match = FILE.exec(file);
      return match?.[1] && match[2] ? [{ version: Number(match[1]), name: match[2], sql: readFileSync(join(dir, file), "utf8") }] : [];
    })
    .sort((a, b) => a.version - b.version);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1)
      throw new Error(`${dir}: migration ${String(i + 1).padStart(3, "0")} is missing (found ${m.version}-${m.name})`);
  });
  return migrations;
}

const versionRow = z.object({ version: z.coerce.number().int().nonnegative() });

// One key for every host's migrator: two `fleet init` at once take turns.
const LOCK = "SELECT pg_advisory_xact_lock(hashtext('gpu-canary/fleet-migrate'))";
const VERSION_TABLE = `CREATE TABLE IF NOT EXISTS schema_version (
  version integer PRIMARY KEY,
  name text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)`;

async function versionIn(client: pg.PoolClient | pg.Pool): Promise<number> {
  const result = await client.query("SELECT coalesce(max(version), 0) AS version FROM schema_version");
  return versionRow.parse(result.rows[0]).version;
}

export interface MigrateResult {
  from: number;
  to: number;
  applied: string[];
}

/**
 * Bring the database to the newest schema: each missing migration in its own transaction,
 * under a transaction-level advisory lock (safe behind PgBouncer's transaction pooling), so
 * hosts may run it at once and again. A database newer than this code refuses.
 */
export async function migrate(pool: pg.Pool, migrations: Migration[] = loadMigrations()): Promise<MigrateResult> {
  const known = migrations.length;
  let from: number | undefined;
  const applied: string[] = [];
  for (;;) {
    const step = await inTransaction(pool, async (client) => {
      await client.query(LOCK);
      await client.query(VERSION_TABLE);
      const current = await versionIn(client);
      from ??= current;
      if (current > known) throw new FleetSchemaNewerError(describeDatabase(pool), current, known);
      const next = migrations[current];
      if (next === undefined) return null;
      await client.query(next.sql);
      await client.query("INSERT INTO schema_version (version, name) VALUES ($1, $2)", [next.version, next.name]);
      return next;
    });
    if (step === null) return { from: from ?? 0, to: known, applied };
    applied.push(`${String(step.version).padStart(3, "0")}-${step.name}`);
  }
}

/**
 * The schema this code needs is there: throws FLEET_SCHEMA_MISSING (run `gpu-canary fleet init`)
 * or FLEET_SCHEMA_NEWER (upgrade this host); answers the version.
 */
export async function checkSchema(pool: pg.Pool, migrations: Migration[] = loadMigrations()): Promise<number> {
  const known = migrations.length;
  const present = await query<{ present: boolean }>(pool, "SELECT to_regclass('schema_version') IS NOT NULL AS present");
  const found = present.rows[0]?.present === true ? await versionOfPool(pool) : 0;
  if (found > known) throw new FleetSchemaNewerError(describeDatabase(pool), found, known);
  if (found < known) throw new FleetSchemaMissingError(describeDatabase(pool), found, known);
  return found;
}

async function versionOfPool(pool: pg.Pool): Promise<number> {
  const result = await query(pool, "SELECT coalesce(max(version), 0) AS version FROM schema_version");
  return versionRow.parse(result.rows[0]).version;
}
