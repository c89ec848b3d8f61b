import { postgresForFile } from "@gpu-canary/testing";
import type pg from "pg";
import { describe, expect, it } from "vitest";
import { touchHost } from "./hosts.ts";
import {
  RolloutNotFoundError,
  RolloutRunningError,
  appliedRolloutsOf,
  assignmentFor,
  reportResult,
  resumeRollout,
  rolloutStatus,
  startRollout,
} from "./rollouts.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

const postgres = postgresForFile();

const FP = { gpu_name: "NVIDIA L4", vllm_version: "0.11.0" };
const PROMOTION = { run_id: "r-1", candidate: { vllm_memory_util: 0.8 }, fingerprint: FP };
/** The caller's comparator: the GPU named differently, or no fingerprint published, differs. */
const differs = (fp: unknown): string[] => {
  if (fp === undefined || fp === null) return ["no fingerprint published"];
  const gpu = (fp as { gpu_name?: string }).gpu_name;
  return gpu === FP.gpu_name ? [] : [`GPU ${FP.gpu_name} → ${gpu}`];
};

async function fleetOf(pool: pg.Pool, hosts: Record<string, unknown>) {
  for (const [hostId, fingerprint] of Object.entries(hosts))
    await touchHost(pool, hostId, fingerprint === undefined ? undefined : { fingerprint });
}

const states = async (pool: pg.Pool, id: string) =>
  Object.fromEntries((await rolloutStatus(pool, id)).hosts.map((h) => [h.hostId, h.state]));

describe("rollouts", () => {
  it("assigns one host at a time in waves of one, the proving host first, skipping a host whose fingerprint differs; done when all applied", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await fleetOf(pool, { "gpu-a": FP, "gpu-b": FP, "gpu-c": FP, "gpu-d": { ...FP, gpu_name: "NVIDIA A10" }, "gpu-e": undefined });
    const rollout = await startRollout(pool, { runId: "r-1", fromHost: "gpu-b", promotion: PROMOTION, differs, id: "ro-1" });
    expect(rollout).toMatchObject({ id: "ro-1", runId: "r-1", fromHost: "gpu-b", wave: 1, state: "running" });
    expect(rollout.hosts.map((h) => [h.hostId, h.state, h.reason])).toEqual([
      ["gpu-b", "assigned", null],
      ["gpu-a", "pending", null],
      ["gpu-c", "pending", null],
      ["gpu-d", "skipped", "GPU NVIDIA L4 → NVIDIA A10"],
      ["gpu-e", "skipped", "no fingerprint published"],
    ]);
    expect(await assignmentFor(pool, "gpu-a")).toBeNull();
    expect(await assignmentFor(pool, "gpu-b")).toMatchObject({ rolloutId: "ro-1", runId: "r-1", promotion: PROMOTION, state: "assigned" });

    expect(await reportResult(pool, "ro-1", "gpu-b", "applied", "verified")).toBe(true);
    expect(await states(pool, "ro-1")).toMatchObject({ "gpu-b": "applied", "gpu-a": "assigned", "gpu-c": "pending" });
    // a gate's refusal keeps the host's place: nothing else is assigned, it tries at its next window
    await reportResult(pool, "ro-1", "gpu-a", "refused", "refused by the window gate: closed");
    expect(await states(pool, "ro-1")).toMatchObject({ "gpu-a": "refused", "gpu-c": "pending" });
    expect(await assignmentFor(pool, "gpu-a")).toMatchObject({ state: "refused" });
    await reportResult(pool, "ro-1", "gpu-a", "applied", "verified");
    await reportResult(pool, "ro-1", "gpu-c", "applied", "verified");
    expect(await rolloutStatus(pool, "r-1")).toMatchObject({ state: "done" });
    expect(await assignmentFor(pool, "gpu-c")).toBeNull();
  }, 30_000);

  it("pauses at the first host whose apply rolls back: nothing more is assigned until it is resumed", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await fleetOf(pool, { "gpu-a": FP, "gpu-b": FP, "gpu-c": FP });
    await startRollout(pool, { runId: "r-1", fromHost: "gpu-a", promotion: PROMOTION, differs, id: "ro-1" });
    await reportResult(pool, "ro-1", "gpu-a", "applied", "verified");
    await reportResult(pool, "ro-1", "gpu-b", "rolled_back", "verification failed: TTFT p95 900 ms");
    const paused = await rolloutStatus(pool);
    expect(paused).toMatchObject({ id: "ro-1", state: "paused", stateReason: expect.stringContaining("gpu-b: its apply rolled back") });
    expect(await states(pool, "ro-1")).toEqual({ "gpu-a": "applied", "gpu-b": "rolled_back", "gpu-c": "pending" });
    expect(await assignmentFor(pool, "gpu-c")).toBeNull();
    // a late report of a host that holds no place records nothing
    expect(await reportResult(pool, "ro-1", "gpu-c", "applied", "?")).toBe(false);

    // one running rollout per promotion: a paused one does not block a new one, a running one does
    const resumed = await resumeRollout(pool, "ro-1", "operator: gpu-b's load was unusual");
    expect(resumed.state).toBe("running");
    expect(await states(pool, "ro-1")).toMatchObject({ "gpu-b": "rolled_back", "gpu-c": "assigned" });
    const again = await startRollout(pool, { runId: "r-1", fromHost: "gpu-a", promotion: PROMOTION, differs }).catch((e: unknown) => e);
    expect(again).toBeInstanceOf(RolloutRunningError);
    expect(again).toMatchObject({ code: "ROLLOUT_RUNNING", exitCode: 3 });
    expect(await rolloutStatus(pool, "ro-nope").catch((e: unknown) => e)).toBeInstanceOf(RolloutNotFoundError);
  }, 30_000);

  it("a host that applied and went back later (an OOM within the watch, an operator's rollback) pauses the rollout, a done one too", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await fleetOf(pool, { "gpu-a": FP, "gpu-b": FP, "gpu-c": FP });
    await startRollout(pool, { runId: "r-1", fromHost: "gpu-a", promotion: PROMOTION, differs, id: "ro-1" });
    await reportResult(pool, "ro-1", "gpu-a", "applied", "verified");
    expect(await states(pool, "ro-1")).toMatchObject({ "gpu-a": "applied", "gpu-b": "assigned" });
    expect(await appliedRolloutsOf(pool, "gpu-a")).toEqual([{ rolloutId: "ro-1", runId: "r-1" }]);
    expect(await appliedRolloutsOf(pool, "gpu-b")).toEqual([]);
    expect(await reportResult(pool, "ro-1", "gpu-a", "rolled_back", "out of memory within 24 h of applying promotion r-1")).toBe(true);
    expect(await rolloutStatus(pool, "ro-1")).toMatchObject({
      state: "paused",
      stateReason: "gpu-a: rolled back after its apply: out of memory within 24 h of applying promotion r-1",
    });
    // the host whose turn it was keeps its place; nothing more is assigned while paused
    expect(await states(pool, "ro-1")).toEqual({ "gpu-a": "rolled_back", "gpu-b": "assigned", "gpu-c": "pending" });
    expect(await assignmentFor(pool, "gpu-b")).toBeNull();
    expect(await appliedRolloutsOf(pool, "gpu-a")).toEqual([]);
    // told twice (a restarted daemon): recorded once
    expect(await reportResult(pool, "ro-1", "gpu-a", "rolled_back", "again")).toBe(false);
    // only a rollback can follow an apply
    expect(await reportResult(pool, "ro-1", "gpu-b", "applied", "verified")).toBe(true);
    expect(await reportResult(pool, "ro-1", "gpu-b", "failed", "?")).toBe(false);
    expect(await reportResult(pool, "ro-1", "gpu-b", "applied", "?")).toBe(false);

    await resumeRollout(pool, "ro-1", "operator: gpu-a's OOM came from a traffic spike");
    await reportResult(pool, "ro-1", "gpu-c", "applied", "verified");
    expect(await rolloutStatus(pool, "ro-1")).toMatchObject({ state: "done" });
    await reportResult(pool, "ro-1", "gpu-c", "rolled_back", "operator: gpu-canary rollback");
    expect(await rolloutStatus(pool, "ro-1")).toMatchObject({
      state: "paused",
      stateReason: "gpu-c: rolled back after its apply: operator: gpu-canary rollback",
    });
  }, 30_000);

  it("with a soak, the next host takes its turn only that long after the latest apply; a rollback meanwhile pauses it first", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await fleetOf(pool, { "gpu-a": FP, "gpu-b": FP, "gpu-c": FP });
    const started = await startRollout(pool, {
      runId: "r-1",
      fromHost: "gpu-a",
      promotion: PROMOTION,
      differs,
      id: "ro-1",
      soakSeconds: 3600,
    });
    expect(started).toMatchObject({ soakSeconds: 3600, waitsUntil: null });
    expect(await assignmentFor(pool, "gpu-a")).toMatchObject({ rolloutId: "ro-1" });
    await reportResult(pool, "ro-1", "gpu-a", "applied", "verified");
    // gpu-b holds the next place, but does not see it while gpu-a's apply soaks
    expect(await states(pool, "ro-1")).toMatchObject({ "gpu-b": "assigned" });
    expect(await assignmentFor(pool, "gpu-b")).toBeNull();
    const soaking = await rolloutStatus(pool, "ro-1");
    const appliedAt = soaking.hosts.find((h) => h.hostId === "gpu-a")?.updatedAt.getTime() ?? Number.NaN;
    expect(soaking.waitsUntil?.getTime()).toBe(appliedAt + 3_600_000);
    // an hour later (gpu-a's apply moved back an hour): gpu-b's turn
    await pool.query("UPDATE rollout_hosts SET updated_at = updated_at - interval '3601 seconds' WHERE host_id = 'gpu-a'");
    expect(await assignmentFor(pool, "gpu-b")).toMatchObject({ rolloutId: "ro-1", state: "assigned" });
    expect((await rolloutStatus(pool, "ro-1")).waitsUntil).toBeNull();
    await reportResult(pool, "ro-1", "gpu-b", "applied", "verified");
    expect(await assignmentFor(pool, "gpu-c")).toBeNull();
    // gpu-b's production goes back within the soak: paused before gpu-c ever takes it
    await reportResult(pool, "ro-1", "gpu-b", "rolled_back", "out of memory within 24 h");
    await pool.query("UPDATE rollout_hosts SET updated_at = updated_at - interval '2 hours'");
    expect(await assignmentFor(pool, "gpu-c")).toBeNull();
    expect(await rolloutStatus(pool, "ro-1")).toMatchObject({ state: "paused" });
    await expect(startRollout(pool, { runId: "r-2", fromHost: "gpu-a", promotion: PROMOTION, differs, soakSeconds: -1 })).rejects.toThrow(
      /soak must be a whole number of seconds/,
    );
  }, 30_000);

  it("never has more than `wave` hosts assigned when hosts report at the same instant", async () => {
    const db = await freshDatabase(postgres.cluster);
    const setup = db.pool();
    const hosts = Array.from({ length: 8 }, (_, i) => `gpu-${i}`);
    await fleetOf(setup, Object.fromEntries(hosts.map((h) => [h, FP])));
    await startRollout(setup, { runId: "r-1", fromHost: "gpu-0", promotion: PROMOTION, differs, wave: 2, id: "ro-1" });
    // each host its own pool, as each daemon has
    const pools = Object.fromEntries(hosts.map((h) => [h, db.pool({ max: 2 })]));
    let most = 0;
    for (let round = 0; round < 4; round += 1) {
      const holding = (await rolloutStatus(setup, "ro-1")).hosts.filter((h) => h.state === "assigned");
      most = Math.max(most, holding.length);
      if (holding.length === 0) break;
      await Promise.all(holding.map((h) => reportResult(pools[h.hostId]!, "ro-1", h.hostId, "applied", "verified")));
      const after = (await rolloutStatus(setup, "ro-1")).hosts.filter((h) => h.state === "assigned").length;
      most = Math.max(most, after);
      expect(after).toBeLessThanOrEqual(2);
    }
    expect(most).toBe(2);
    expect((await rolloutStatus(setup, "ro-1")).state).toBe("done");
  }, 30_000);
});
