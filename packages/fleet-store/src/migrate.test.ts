import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { MIGRATIONS_DIR, loadMigrations } from "./migrate.ts";

describe("loadMigrations", () => {
  it("reads the SQL files in order, numbered from 1 without a gap", () => {
    const migrations = loadMigrations();
    expect(migrations.map((m) => m.version)).toEqual(migrations.map((_, i) => i + 1));
    expect(migrations[0]?.sql).toContain("CREATE SEQUENCE fencing_token_seq");
  });

  it("refuses a folder where a migration is missing", async () => {
    const dir = await testdir();
    await writeFile(join(dir, "001-first.sql"), "SELECT 1;");
    await writeFile(join(dir, "003-third.sql"), "SELECT 3;");
    await writeFile(join(dir, "notes.txt"), "not a migration");
    expect(() => loadMigrations(dir)).toThrow(/migration 002 is missing \(found 3-third\)/);
  });

  it("ships the migrations folder with the package", () => {
    const pkg = JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8")) as { files: string[] };
    expect(MIGRATIONS_DIR).toBe(join(import.meta.dirname, "..", "migrations"));
    expect(pkg.files).toContain("migrations");
  });
});
