import { postgresForFile, until } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { FleetReleaseRefusedError, FleetSlotLostError } from "./errors.ts";
import { createFleetSlots } from "./fleet-slots.ts";
import { listHosts, touchHost } from "./hosts.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

const postgres = postgresForFile();

const HOSTS = ["gpu-a", "gpu-b", "gpu-c"];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The most holders at once in a timeline of [start, end] intervals. */
function mostAtOnce(intervals: { start: number; end: number }[]): number {
  const events = intervals.flatMap((i) => [
    { at: i.start, d: 1 },
    { at: i.end, d: -1 },
  ]);
  // an end before a start at the same instant: touching intervals do not overlap
  events.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of events) {
    now += e.d;
    most = Math.max(most, now);
  }
  return most;
}

describe("fleet maintenance slots", () => {
  it("gives the only slot to one of three hosts acquiring at the same instant; the others are told who holds it", async () => {
    const db = await freshDatabase(postgres.cluster);
    const slots = HOSTS.map((hostId) => createFleetSlots({ pool: db.pool(), hostId, maxConcurrent: 1 }));
    const results = await Promise.all(slots.map((s, i) => s.acquire(`run-${i}`)));
    const winners = results.flatMap((r, i) => (r.ok ? [HOSTS[i]] : []));
    expect(winners).toHaveLength(1);
    for (const r of results) {
      if (!r.ok) {
        expect(r.maxConcurrent).toBe(1);
        expect(r.holders.map((h) => h.hostId)).toEqual(winners);
        expect(r.holders[0]?.runId).toBe(`run-${HOSTS.indexOf(winners[0]!)}`);
      }
    }
  });

  it("answers the same token when a host takes its run's slot again", async () => {
    const db = await freshDatabase(postgres.cluster);
    const a = createFleetSlots({ pool: db.pool(), hostId: "gpu-a", maxConcurrent: 1 });
    const first = await a.acquire("run-1");
    const again = await a.acquire("run-1");
    expect(first).toMatchObject({ ok: true, reacquired: false });
    expect(again).toEqual({ ok: true, token: first.ok ? first.token : -1, reacquired: true });
    // another run of the same host is refused: one crashed run's slot holds until its recovery
    expect(await a.acquire("run-2")).toMatchObject({ ok: false, holders: [{ hostId: "gpu-a", runId: "run-1" }] });
  });

  it("never lets two hosts hold the only slot at once in 3 hosts × 20 contending runs", async () => {
    const db = await freshDatabase(postgres.cluster);
    const timeline: { host: string; start: number; end: number }[] = [];
    const token: number[] = [];
    await Promise.all(
      HOSTS.map(async (hostId) => {
        const slots = createFleetSlots({ pool: db.pool(), hostId, maxConcurrent: 1 });
        for (let run = 0; run < 20; run += 1) {
          const got = await slots.acquireWaiting(`${hostId}-${run}`, { waitSeconds: 30, pollMs: 4 });
          if (!got.ok) throw new Error(`${hostId} waited 30 s for a slot`);
          token.push(got.token);
          const start = performance.now();
          await sleep(3); // the maintenance: long enough that a broken cap would show an overlap
          await slots.assertHeld(got.token);
          timeline.push({ host: hostId, start, end: performance.now() });
          expect(await slots.release({ runId: `${hostId}-${run}` })).toBe(true);
        }
      }),
    );
    expect(timeline).toHaveLength(60);
    expect(mostAtOnce(timeline)).toBe(1);
    // fencing tokens strictly increase in the order the slot was granted
    expect(token).toEqual([...token].sort((a, b) => a - b));
    expect(new Set(token).size).toBe(60);
  });

  it("lets at most two hosts in at once with a cap of 2", async () => {
    const db = await freshDatabase(postgres.cluster);
    const timeline: { start: number; end: number }[] = [];
    await Promise.all(
      [...HOSTS, "gpu-d"].map(async (hostId) => {
        const slots = createFleetSlots({ pool: db.pool(), hostId, maxConcurrent: 2 });
        for (let run = 0; run < 8; run += 1) {
          const got = await slots.acquireWaiting(`r${run}`, { waitSeconds: 30, pollMs: 4 });
          if (!got.ok) throw new Error(`${hostId} waited 30 s for a slot`);
          const start = performance.now();
          await sleep(5);
          timeline.push({ start, end: performance.now() });
          await slots.release({ token: got.token });
        }
      }),
    );
    expect(mostAtOnce(timeline)).toBeLessThanOrEqual(2);
  });

  it("keeps a slot whose holder stopped renewing, shows it stale, and frees it only by a forced release", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const a = createFleetSlots({ pool, hostId: "gpu-a", maxConcurrent: 1, staleAfterSeconds: 30 });
    const b = createFleetSlots({ pool: db.pool(), hostId: "gpu-b", maxConcurrent: 1, staleAfterSeconds: 30 });
    const got = await a.acquire("run-1");
    if (!got.ok) throw new Error("gpu-a should have the slot");
    await pool.query("UPDATE hosts SET last_seen = now() - interval '1 hour'");
    expect(await a.renew(got.token)).toBe(true);
    expect(await b.list()).toMatchObject([{ hostId: "gpu-a", runId: "run-1", token: got.token, renewing: true }]);
    // the heartbeat says the host is alive too
    const seen = await listHosts(pool);
    expect(seen.map((h) => h.hostId)).toEqual(["gpu-a"]);
    expect(seen.find((h) => h.hostId === "gpu-a")?.lastSeen.getTime()).toBeGreaterThan(Date.now() - 60_000);

    // gpu-a died 10 minutes ago: its last renewal is that old (the database's clock judges)
    await pool.query("UPDATE slots SET renewed_at = now() - interval '10 minutes', acquired_at = now() - interval '11 minutes'");
    const [held] = await b.list();
    expect(held).toMatchObject({ hostId: "gpu-a", renewing: false, releaseCommand: "gpu-canary fleet release gpu-a --force" });
    expect(held?.secondsSinceRenewal).toBeGreaterThanOrEqual(600);
    expect(await b.acquire("run-9")).toMatchObject({ ok: false, holders: [{ hostId: "gpu-a" }] });

    const refused = await b.releaseHost("gpu-a").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(FleetReleaseRefusedError);
    expect(refused).toMatchObject({ code: "FLEET_RELEASE_NEEDS_FORCE", exitCode: 2 });
    expect(await b.list()).toHaveLength(1);

    const released = await b.releaseHost("gpu-a", { force: true, by: "operator", reason: "gpu-a is dead" });
    expect(released).toMatchObject({
      by: "operator",
      reason: "gpu-a is dead",
      released: [{ hostId: "gpu-a", runId: "run-1", token: got.token }],
    });
    expect(await b.list()).toEqual([]);

    // gpu-a comes back: fenced out
    expect(await a.renew(got.token)).toBe(false);
    const lost = await a.assertHeld(got.token).catch((e: unknown) => e);
    expect(lost).toBeInstanceOf(FleetSlotLostError);
    expect(lost).toMatchObject({ code: "FLEET_SLOT_LOST", kind: "refused", exitCode: 3 });
    const next = await b.acquire("run-9");
    expect(next.ok && next.token > got.token).toBe(true);
  });

  it("keeps renewing a held slot until stopped, and says once when the slot was released by force", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    const a = createFleetSlots({ pool, hostId: "gpu-a", maxConcurrent: 1, staleAfterSeconds: 30 });
    const got = await a.acquire("run-1");
    if (!got.ok) throw new Error("gpu-a should have the slot");
    await pool.query("UPDATE slots SET renewed_at = now() - interval '10 minutes'");
    let lost = 0;
    const errors: unknown[] = [];
    const heartbeat = a.keepRenewing(got.token, { everyMs: 20, onLost: () => (lost += 1), onError: (e) => errors.push(e) });
    await until(async () => (await a.list())[0]?.renewing, "the slot renewed");
    await a.releaseHost("gpu-a", { by: "recover" });
    await until(() => lost > 0, "the heartbeat to notice the lost slot");
    await sleep(100);
    await heartbeat.stop();
    expect(lost).toBe(1);
    expect(errors).toEqual([]);
  });

  it("lists every host that took or renewed a slot, with what each said of itself", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await touchHost(pool, "gpu-c", { version: "0.1.0" });
    const a = createFleetSlots({ pool, hostId: "gpu-a", maxConcurrent: 1 });
    const b = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    await a.acquire("run-1");
    await b.acquire("run-2"); // refused, but seen
    await touchHost(pool, "gpu-c");
    await touchHost(pool, "gpu-c", { applied: null });
    const hosts = await listHosts(pool);
    expect(hosts.map((h) => h.hostId)).toEqual(["gpu-a", "gpu-b", "gpu-c"]);
    expect(hosts[2]?.info).toEqual({ version: "0.1.0", applied: null });
    expect(hosts.every((h) => Math.abs(h.lastSeen.getTime() - Date.now()) < 60_000)).toBe(true);
  });

  it("frees its own host's slots on recovery without --force", async () => {
    const db = await freshDatabase(postgres.cluster);
    const a = createFleetSlots({ pool: db.pool(), hostId: "gpu-a", maxConcurrent: 2 });
    await a.acquire("run-1");
    await a.acquire("run-2");
    const { released } = await a.releaseHost("gpu-a", { by: "recover" });
    expect(released.map((h) => h.runId)).toEqual(["run-1", "run-2"]);
    expect(await a.release({ runId: "run-1" })).toBe(false);
  });

  it("waits for a slot with --wait and gets it when the holder's run ends; gives up after the wait", async () => {
    const db = await freshDatabase(postgres.cluster);
    const a = createFleetSlots({ pool: db.pool(), hostId: "gpu-a", maxConcurrent: 1 });
    const b = createFleetSlots({ pool: db.pool(), hostId: "gpu-b", maxConcurrent: 1 });
    await a.acquire("run-1");
    const started = Date.now();
    const gaveUp = await b.acquireWaiting("run-2", { waitSeconds: 0.3, pollMs: 50 });
    expect(gaveUp).toMatchObject({ ok: false, holders: [{ hostId: "gpu-a" }] });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(Date.now() - started).toBeLessThan(2_000);

    const waiting = b.acquireWaiting("run-2", { waitSeconds: 10, pollMs: 50 });
    await sleep(200);
    await a.release({ runId: "run-1" });
    expect(await waiting).toMatchObject({ ok: true });

    const controller = new AbortController();
    const aborted = a.acquireWaiting("run-3", { waitSeconds: 10, pollMs: 50, signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    expect(await aborted).toMatchObject({ ok: false });
  });
});
