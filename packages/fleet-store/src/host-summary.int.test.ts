import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { postgresForFile, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { syncAudit } from "./audit-sync.ts";
import { FleetDbUnreachableError } from "./errors.ts";
import { fleetOverview } from "./fleet-overview.ts";
import { createFleetSlots } from "./fleet-slots.ts";
import { publishHost } from "./host-summary.ts";
import { listHosts, touchHost } from "./hosts.ts";
import { listFleetIntents, syncIntents } from "./intents.ts";
import { listFleetPromotions, syncPromotions } from "./promotions.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

// This file stops and starts its own cluster: no other file's tests share it.
const postgres = postgresForFile();

const promotion = (runId: string, state: string, util = 0.8, createdAt = "2026-11-28T03:10:00.000Z") => ({
  run_id: runId,
  created_at: createdAt,
  subsystem: "gpu_allocation",
  candidate: { vllm_memory_util: util, whisper_model_size: "small" },
  state,
  passes: [],
});

const intent = (id: string, state: string, createdAt = "2026-11-28T03:10:00.000Z", kind = "oom_kv_cache") => ({
  id,
  kind,
  subsystem: "gpu_allocation",
  evidence: "CUDA out of memory",
  created_at: createdAt,
  state,
});

const applied = { vllm_memory_util: 0.82, whisper_model_size: "small", promotion_run_id: "r-a-1", applied_at: "2026-11-28T03:20:00.000Z" };

async function auditDir(lines: Record<string, unknown>[]): Promise<string> {
  const dir = join(await testdir(), "out", "orchestration", "epochs");
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, "gpu_canary_20261128.jsonl"),
    lines.map((l) => `${JSON.stringify({ run_id: null, host: "h", pid: 1, ...l })}\n`).join(""),
  );
  return dir;
}

describe("syncPromotions", () => {
  it("upserts each host's promotions once, takes their state changes, and never takes over another host's run id", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const mine = [promotion("r-a-1", "proposed"), promotion("r-a-2", "proposed", 0.85, "2026-11-28T03:30:00.000Z")];
    expect(await syncPromotions(pool, { hostId: "gpu-a", promotions: mine })).toEqual({ written: 2, otherHost: [] });
    // again, unchanged: nothing written
    expect(await syncPromotions(pool, { hostId: "gpu-a", promotions: mine })).toEqual({ written: 0, otherHost: [] });
    // r-a-1 applied on gpu-a: its row follows
    const changed = [{ ...promotion("r-a-1", "applied"), state_changed_at: "2026-11-28T03:40:00.000Z" }, mine[1]!];
    expect(await syncPromotions(pool, { hostId: "gpu-a", promotions: changed })).toEqual({ written: 1, otherHost: [] });
    // gpu-b says it has r-a-2 too: the row stays gpu-a's
    expect(
      await syncPromotions(pool, { hostId: "gpu-b", promotions: [promotion("r-a-2", "stale"), promotion("r-b-1", "proposed")] }),
    ).toEqual({
      written: 1,
      otherHost: ["r-a-2"],
    });

    const all = await listFleetPromotions(pool);
    expect(all.map((p) => [p.runId, p.hostId, p.state])).toEqual([
      ["r-a-1", "gpu-a", "applied"],
      ["r-b-1", "gpu-b", "proposed"],
      ["r-a-2", "gpu-a", "proposed"],
    ]);
    expect(all[0]?.doc).toMatchObject({ state_changed_at: "2026-11-28T03:40:00.000Z" });
    expect(all[0]?.createdAt.toISOString()).toBe("2026-11-28T03:10:00.000Z");
    expect((await listFleetPromotions(pool, { state: "proposed" })).map((p) => p.runId)).toEqual(["r-b-1", "r-a-2"]);
    expect((await listFleetPromotions(pool, { state: "proposed", hostId: "gpu-a" })).map((p) => p.runId)).toEqual(["r-a-2"]);
    expect((await listFleetPromotions(pool, { state: ["applied", "stale"] })).map((p) => p.runId)).toEqual(["r-a-1"]);
  });

  it("counts a promotion without a state as proposed, as the host's own files do", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const old: Record<string, unknown> & { run_id: string } = promotion("r-old", "proposed");
    delete old.state;
    await syncPromotions(pool, { hostId: "gpu-a", promotions: [old] });
    expect((await listFleetPromotions(pool, { state: "proposed" })).map((p) => [p.runId, p.state])).toEqual([["r-old", "proposed"]]);
  });
});

describe("syncIntents", () => {
  it("upserts each host's intents once, follows them from folder to folder, and never takes over another host's id", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const mine = [intent("i-a-1", "pending"), intent("i-a-2", "processing", "2026-11-28T03:30:00.000Z", "manual")];
    expect(await syncIntents(pool, { hostId: "gpu-a", intents: mine })).toEqual({ written: 2, otherHost: [] });
    expect(await syncIntents(pool, { hostId: "gpu-a", intents: mine })).toEqual({ written: 0, otherHost: [] });
    // i-a-2 worked: processed, with its outcome
    const worked = [mine[0]!, { ...intent("i-a-2", "processed", "2026-11-28T03:30:00.000Z", "manual"), outcome: { status: "passed" } }];
    expect(await syncIntents(pool, { hostId: "gpu-a", intents: worked })).toEqual({ written: 1, otherHost: [] });
    // gpu-b says it has i-a-1 too: the row stays gpu-a's and pending
    expect(
      await syncIntents(pool, {
        hostId: "gpu-b",
        intents: [intent("i-a-1", "failed"), intent("i-b-1", "pending", "2026-11-28T02:00:00.000Z")],
      }),
    ).toEqual({ written: 1, otherHost: ["i-a-1"] });

    const all = await listFleetIntents(pool);
    expect(all.map((i) => [i.id, i.hostId, i.state, i.kind])).toEqual([
      ["i-b-1", "gpu-b", "pending", "oom_kv_cache"],
      ["i-a-1", "gpu-a", "pending", "oom_kv_cache"],
      ["i-a-2", "gpu-a", "processed", "manual"],
    ]);
    expect(all[2]?.doc).toMatchObject({ outcome: { status: "passed" } });
    expect(all[2]?.createdAt.toISOString()).toBe("2026-11-28T03:30:00.000Z");
    expect((await listFleetIntents(pool, { state: "pending" })).map((i) => i.id)).toEqual(["i-b-1", "i-a-1"]);
    expect((await listFleetIntents(pool, { state: "pending", hostId: "gpu-a" })).map((i) => i.id)).toEqual(["i-a-1"]);
    expect((await listFleetIntents(pool, { state: ["processing", "processed"] })).map((i) => i.id)).toEqual(["i-a-2"]);
    expect((await listFleetIntents(pool, { hostId: "gpu-b" })).map((i) => i.id)).toEqual(["i-b-1"]);
  });
});

describe("publishHost and fleetOverview", () => {
  it("publish each host's applied settings, last run and promotions; the overview shows them per host and the fleet's pending ones", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const dirA = await auditDir([
      { ts: "2026-11-28T03:00:00.000Z", event: "run_finished", run_id: "r-a-1", status: "passed", mode: "canary" },
      { ts: "2026-11-28T03:30:00.000Z", event: "run_finished", run_id: "r-a-9", status: "applied", mode: "apply" },
      { ts: "2026-11-28T03:31:00.000Z", event: "lock_released", run_id: "r-a-9", generation: 2 },
    ]);
    await syncAudit(pool, { hostId: "gpu-a", auditDir: dirA });
    // gpu-c copied a later run_finished: it is not gpu-a's last run
    await syncAudit(pool, {
      hostId: "gpu-c",
      auditDir: await auditDir([
        { ts: "2026-11-28T04:00:00.000Z", event: "run_finished", run_id: "r-c-1", status: "failed", mode: "canary" },
      ]),
    });
    await touchHost(pool, "gpu-a", { version: "0.9.0" });

    const published = await publishHost(pool, {
      hostId: "gpu-a",
      applied,
      promotions: [promotion("r-a-1", "applied"), promotion("r-a-2", "proposed", 0.85, "2026-11-28T03:30:00.000Z")],
      intents: [
        intent("i-a-2", "processing", "2026-11-28T03:40:00.000Z", "manual"),
        intent("i-a-1", "pending", "2026-11-28T03:35:00.000Z"),
        intent("i-a-0", "processed", "2026-11-28T01:00:00.000Z"),
      ],
    });
    expect(published.intents).toEqual({ written: 3, otherHost: [] });
    expect(published.lastRun).toEqual({ run_id: "r-a-9", at: "2026-11-28T03:30:00.000Z", status: "applied", mode: "apply" });
    // gpu-b: nothing applied, no run yet, one pending promotion
    await publishHost(pool, {
      hostId: "gpu-b",
      applied: null,
      promotions: [promotion("r-b-1", "proposed", 0.78, "2026-11-28T02:00:00.000Z")],
      intents: [intent("i-b-1", "failed", "2026-11-28T02:30:00.000Z")],
    });
    await publishHost(pool, { hostId: "gpu-c", applied: null, appliedError: "applied.json: not JSON", promotions: [] });
    // what the host said before is kept beside it
    expect((await listHosts(pool)).find((h) => h.hostId === "gpu-a")?.info).toMatchObject({ version: "0.9.0", applied });

    const slots = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    expect(await slots.acquire("r-b-2")).toMatchObject({ ok: true });
    await pool.query("INSERT INTO documents (host_id, key, doc) VALUES ('gpu-a', 'budget/20261127', $1)", [
      JSON.stringify({ seconds_used: 12, charges: [] }),
    ]);

    const overview = await fleetOverview(pool, { hostId: "gpu-a", maxConcurrent: 1, night: "20261127", maxSeconds: 60 });
    expect(overview.hosts.map((h) => h.host_id)).toEqual(["gpu-a", "gpu-b", "gpu-c"]);
    expect(overview.hosts[0]).toMatchObject({
      in_maintenance: false,
      budget_seconds_used: 12,
      applied: { vllm_memory_util: 0.82, whisper_model_size: "small", promotion_run_id: "r-a-1", since: "2026-11-28T03:20:00.000Z" },
      applied_error: null,
      last_run: { run_id: "r-a-9", at: "2026-11-28T03:30:00.000Z", verdict: "applied", mode: "apply" },
      pending_promotions: ["r-a-2"],
      open_intents: ["i-a-1", "i-a-2"],
    });
    expect(overview.hosts[1]).toMatchObject({
      in_maintenance: true,
      run_id: "r-b-2",
      renewing: true,
      applied: null,
      last_run: null,
      pending_promotions: ["r-b-1"],
      open_intents: [],
    });
    expect(overview.hosts[2]).toMatchObject({
      applied: null,
      applied_error: "applied.json: not JSON",
      last_run: { run_id: "r-c-1", verdict: "failed" },
      pending_promotions: [],
    });
    expect(overview.pending_promotions).toEqual([
      { run_id: "r-b-1", host_id: "gpu-b", created_at: "2026-11-28T02:00:00Z", vllm_memory_util: 0.78, whisper_model_size: "small" },
      { run_id: "r-a-2", host_id: "gpu-a", created_at: "2026-11-28T03:30:00Z", vllm_memory_util: 0.85, whisper_model_size: "small" },
    ]);
    expect(overview.open_intents).toEqual([
      { id: "i-a-1", host_id: "gpu-a", kind: "oom_kv_cache", state: "pending", created_at: "2026-11-28T03:35:00Z" },
      { id: "i-a-2", host_id: "gpu-a", kind: "manual", state: "processing", created_at: "2026-11-28T03:40:00Z" },
    ]);
    expect(overview.budget).toEqual({ date: "20261127", seconds_used: 12, max_seconds: 60, seconds_left: 48 });
    expect(overview.database).not.toContain(postgres.cluster.password);
  });

  it("throws FLEET_DB_UNREACHABLE while the database is stopped; the next publication catches up", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await postgres.cluster.stop();
    try {
      const error = await publishHost(pool, { hostId: "gpu-a", applied, promotions: [promotion("r-a-1", "proposed")] }).catch(
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(FleetDbUnreachableError);
      expect((error as Error).message).not.toContain(postgres.cluster.password);
    } finally {
      await postgres.cluster.start();
    }
    await publishHost(pool, { hostId: "gpu-a", applied, promotions: [promotion("r-a-1", "proposed")] });
    expect((await listFleetPromotions(pool)).map((p) => p.runId)).toEqual(["r-a-1"]);
  });
});
