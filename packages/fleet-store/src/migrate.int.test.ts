import { postgresForFile } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { FleetSchemaMissingError, FleetSchemaNewerError } from "./errors.ts";
import { checkSchema, loadMigrations, migrate } from "./migrate.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

const postgres = postgresForFile();

const known = loadMigrations().length;

describe("migrate", () => {
  it("creates the schema on an empty database and changes nothing when run again", async () => {
    const db = await freshDatabase(postgres.cluster, { empty: true });
    const pool = db.pool();
    const first = await migrate(pool);
    expect(first).toEqual({ from: 0, to: known, applied: ["001-initial", "002-audit-lines", "003-rollouts", "004-rollout-soak"] });
    const second = await migrate(pool);
    expect(second).toEqual({ from: known, to: known, applied: [] });
    const tables = await pool.query<{ name: string }>(
      "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    );
    expect(tables.rows.map((r) => r.name)).toEqual([
      "audit",
      "documents",
      "hosts",
      "intents",
      "promotions",
      "rollout_hosts",
      "rollouts",
      "schema_version",
      "slots",
    ]);
    expect(await checkSchema(pool)).toBe(known);
  });

  it("is safe when three hosts run fleet init at the same instant", async () => {
    const db = await freshDatabase(postgres.cluster, { empty: true });
    const results = await Promise.all([db.pool(), db.pool(), db.pool()].map((pool) => migrate(pool)));
    expect(results.flatMap((r) => r.applied).sort()).toEqual(["001-initial", "002-audit-lines", "003-rollouts", "004-rollout-soak"]);
    const versions = await db.pool().query("SELECT version FROM schema_version");
    expect(versions.rowCount).toBe(known);
  });

  it("refuses a database without the schema, naming gpu-canary fleet init", async () => {
    const db = await freshDatabase(postgres.cluster, { empty: true });
    const error = await checkSchema(db.pool()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FleetSchemaMissingError);
    expect(error).toMatchObject({ code: "FLEET_SCHEMA_MISSING", kind: "refused", exitCode: 3 });
    expect((error as FleetSchemaMissingError).hint).toContain("gpu-canary fleet init");
    expect((error as Error).message).toContain(`127.0.0.1:${postgres.cluster.port}/`);
    expect((error as Error).message).not.toContain(postgres.cluster.password);
  });

  it("refuses a schema newer than this version knows, in check and in migrate", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await pool.query("INSERT INTO schema_version (version, name) VALUES ($1, 'from-the-future')", [known + 1]);
    for (const attempt of [checkSchema(pool), migrate(pool)]) {
      const error = await attempt.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FleetSchemaNewerError);
      expect(error).toMatchObject({ code: "FLEET_SCHEMA_NEWER", kind: "refused", exitCode: 3 });
      expect((error as Error).message).toContain(`version ${known + 1}, newer than the ${known}`);
    }
  });
});
