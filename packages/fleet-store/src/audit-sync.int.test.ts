import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { postgresForFile, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { queryAudit, syncAudit } from "./audit-sync.ts";
import { FleetDbUnreachableError } from "./errors.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

// This file stops and starts its own cluster: no other file's tests share it.
const postgres = postgresForFile();

const line = (ts: string, event: string, extra: Record<string, unknown> = {}) =>
  `${JSON.stringify({ ts, event, run_id: null, host: "h", pid: 1, ...extra })}\n`;

async function auditDir(): Promise<string> {
  const dir = join(await testdir(), "out", "orchestration", "epochs");
  await mkdir(dir, { recursive: true });
  return dir;
}

const day = (dir: string, yyyymmdd: string) => join(dir, `gpu_canary_${yyyymmdd}.jsonl`);

describe("syncAudit", () => {
  it("copies each host's lines once: run again, it copies nothing; a new line is copied alone", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const dirA = await auditDir();
    const dirB = await auditDir();
    await writeFile(
      day(dirA, "20261127"),
      line("2026-11-27T03:00:00.000Z", "lock_acquired") + line("2026-11-27T03:00:05.000Z", "lock_released"),
    );
    await writeFile(day(dirA, "20261128"), line("2026-11-28T03:00:00.000Z", "budget_reset"));
    await writeFile(day(dirB, "20261128"), line("2026-11-28T02:59:59.000Z", "budget_charged"));
    // a day file with a line still being written: its last, unfinished line waits for its newline
    await appendFile(day(dirA, "20261128"), '{"ts": "2026-11-28T03:');

    expect(await syncAudit(pool, { hostId: "gpu-a", auditDir: dirA })).toBe(3);
    expect(await syncAudit(pool, { hostId: "gpu-b", auditDir: dirB })).toBe(1);
    // again, and two processes of a host at once: nothing twice
    expect(await syncAudit(pool, { hostId: "gpu-a", auditDir: dirA })).toBe(0);
    const both = await Promise.all([db.pool(), db.pool()].map((p) => syncAudit(p, { hostId: "gpu-b", auditDir: dirB })));
    expect(both).toEqual([0, 0]);

    await appendFile(day(dirA, "20261128"), `00:09.000Z", "event": "budget_charged", "run_id": "r-1", "host": "h", "pid": 1}\n`);
    const racing = await Promise.all([db.pool(), db.pool(), db.pool()].map((p) => syncAudit(p, { hostId: "gpu-a", auditDir: dirA })));
    expect(racing.reduce((a, b) => a + b, 0)).toBe(1);

    const rows = await queryAudit(pool);
    expect(rows.map((r) => [r.hostId, r.day, r.lineNo, r.record.event])).toEqual([
      ["gpu-a", "20261127", 1, "lock_acquired"],
      ["gpu-a", "20261127", 2, "lock_released"],
      ["gpu-b", "20261128", 1, "budget_charged"],
      ["gpu-a", "20261128", 1, "budget_reset"],
      ["gpu-a", "20261128", 2, "budget_charged"],
    ]);
    expect(rows.at(-1)?.at.toISOString()).toBe("2026-11-28T03:00:09.000Z");
    const count = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit");
    expect(Number(count.rows[0]?.n)).toBe(5);

    // the filters: one host, an event, a run, a time range
    expect((await queryAudit(pool, { hostId: "gpu-b" })).map((r) => r.hostId)).toEqual(["gpu-b"]);
    expect((await queryAudit(pool, { event: "budget_charged" })).map((r) => r.hostId)).toEqual(["gpu-b", "gpu-a"]);
    expect((await queryAudit(pool, { runId: "r-1" })).map((r) => r.lineNo)).toEqual([2]);
    const range = await queryAudit(pool, { since: new Date("2026-11-27T03:00:05Z"), until: new Date("2026-11-28T03:00:00Z") });
    expect(range.map((r) => r.record.event)).toEqual(["lock_released", "budget_charged"]);
  });

  it("keeps a line that is not JSON as unparsed text, with the time of the line before it", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const dir = await auditDir();
    await writeFile(
      day(dir, "20261128"),
      `${line("2026-11-28T03:00:00.000Z", "lock_acquired")}this is {not json\n\n[1, 2]\n${line("2026-11-28T03:00:02.000Z", "lock_released")}nul \u0000 here\n`,
    );
    expect(await syncAudit(pool, { hostId: "gpu-a", auditDir: dir })).toBe(5);
    const rows = await queryAudit(pool);
    expect(rows.map((r) => [r.lineNo, r.record])).toEqual([
      [1, expect.objectContaining({ event: "lock_acquired" })],
      [2, { unparsed: "this is {not json" }],
      [4, { unparsed: "[1, 2]" }],
      [5, expect.objectContaining({ event: "lock_released" })],
      [6, { unparsed: "nul \ufffd here" }],
    ]);
    expect(rows[1]?.at.toISOString()).toBe("2026-11-28T03:00:00.000Z");
    expect(await syncAudit(pool, { hostId: "gpu-a", auditDir: dir })).toBe(0);
  });

  it("copies nothing from a host without audit files", async () => {
    const db = await freshDatabase(postgres.cluster);
    expect(await syncAudit(db.pool(), { hostId: "gpu-a", auditDir: join(await testdir(), "missing") })).toBe(0);
  });

  it("throws FLEET_DB_UNREACHABLE while the database is stopped, and copies the lines written meanwhile once it is back: nothing lost", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const dir = await auditDir();
    await writeFile(day(dir, "20261128"), line("2026-11-28T03:00:00.000Z", "lock_acquired"));
    expect(await syncAudit(pool, { hostId: "gpu-a", auditDir: dir })).toBe(1);

    await postgres.cluster.stop();
    try {
      await appendFile(day(dir, "20261128"), line("2026-11-28T03:00:01.000Z", "production_stopped", { method: "systemd" }));
      await appendFile(day(dir, "20261128"), line("2026-11-28T03:00:40.000Z", "production_restored"));
      await writeFile(day(dir, "20261129"), line("2026-11-29T03:00:00.000Z", "run_finished", { status: "error", mode: "canary" }));
      const error = await syncAudit(pool, { hostId: "gpu-a", auditDir: dir }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FleetDbUnreachableError);
      expect(error).toMatchObject({ code: "FLEET_DB_UNREACHABLE" });
      expect((error as Error).message).not.toContain(postgres.cluster.password);
    } finally {
      await postgres.cluster.start();
    }

    expect(await syncAudit(pool, { hostId: "gpu-a", auditDir: dir })).toBe(3);
    expect((await queryAudit(pool, { hostId: "gpu-a" })).map((r) => r.record.event)).toEqual([
      "lock_acquired",
      "production_stopped",
      "production_restored",
      "run_finished",
    ]);
  });
});
