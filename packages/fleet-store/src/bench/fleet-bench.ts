// pnpm bench (fleet-store): a fleet slot's acquire+release against the local GPU file lock in the
// same run, and three hosts contending for one slot — overlaps (must be 0) and runs per second.
// A throwaway PostgreSQL on loopback, like the tests; medians of several rounds.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createGpuLock } from "@gpu-canary/gpu-lock";
import { recordBench, startPostgres } from "@gpu-canary/testing";
import { createFleetPool } from "../connection.ts";
import { createFleetSlots } from "../fleet-slots.ts";
import { migrate } from "../migrate.ts";

const ROUNDS = 5;
const OPS = 200;
const HOSTS = 3;
const RUNS = 50;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

async function timeOps(fn: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 20; i += 1) await fn(); // warm-up
  const start = performance.now();
  for (let i = 0; i < OPS; i += 1) await fn();
  return ((performance.now() - start) * 1000) / OPS;
}

/** The most holders at once among [start, end] intervals (touching ones do not overlap). */
function mostAtOnce(intervals: { start: number; end: number }[]): number {
  const events = intervals.flatMap((i) => [
    { at: i.start, d: 1 },
    { at: i.end, d: -1 },
  ]);
  events.sort((a, b) => a.at - b.at || a.d - b.d);
  let now = 0;
  let most = 0;
  for (const e of events) {
    now += e.d;
    most = Math.max(most, now);
  }
  return most;
}

const cluster = await startPostgres();
const dir = await mkdtemp(join(tmpdir(), "fleet-bench-"));
const pools = Array.from({ length: HOSTS }, () => createFleetPool(cluster.url(), { max: 2 }));
try {
  const slots = pools.map((pool, i) => createFleetSlots({ pool, hostId: `gpu-${i}`, maxConcurrent: 1 }));
  const [first] = pools;
  const [alone] = slots;
  if (!first || !alone) throw new Error("no hosts");
  await migrate(first);
  const gpuLock = createGpuLock({ path: join(dir, "gpu.lock"), ttlSeconds: 120, owner: "bench" });

  const ours: number[] = [];
  const local: number[] = [];
  let n = 0;
  for (let round = 0; round < ROUNDS; round += 1) {
    ours.push(
      await timeOps(async () => {
        n += 1;
        const got = await alone.acquire(`bench-${n}`);
        if (!got.ok) throw new Error("the slot should be free");
        await alone.release({ token: got.token });
      }),
    );
    local.push(
      await timeOps(async () => {
        await (await gpuLock.acquire({ waitSeconds: 0 })).release();
      }),
    );
  }
  const x = median(ours);
  const y = median(local);
  process.stdout.write(`fleet slot acquire+release: ${x.toFixed(0)} us/op; gpu-lock: ${y.toFixed(0)} us/op; ratio ${(x / y).toFixed(2)}\n`);
  process.stdout.write(`  spread over ${ROUNDS} rounds of ${OPS}: fleet slot ${spread(ours)} us, gpu-lock ${spread(local)} us\n`);

  const timeline: { start: number; end: number }[] = [];
  const started = performance.now();
  await Promise.all(
    slots.map(async (host, h) => {
      for (let run = 0; run < RUNS; run += 1) {
        const got = await host.acquireWaiting(`contend-${h}-${run}`, { waitSeconds: 60, pollMs: 2 });
        if (!got.ok) throw new Error(`gpu-${h} waited 60 s for a slot`);
        const start = performance.now();
        await host.assertHeld(got.token); // the destructive step's check, as a run does
        timeline.push({ start, end: performance.now() });
        await host.release({ token: got.token });
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  const overlaps = mostAtOnce(timeline) - 1;
  const rate = (HOSTS * RUNS) / elapsed;
  process.stdout.write(`contended (${HOSTS} hosts × ${RUNS} runs, max 1): overlaps ${overlaps}; ${rate.toFixed(0)} runs/s\n`);
  if (overlaps !== 0) process.exitCode = 1;

  await recordBench("fleet slots (packages/fleet-store)", [
    {
      benchmark: `fleet slot acquire+release vs local GPU lock (median of ${ROUNDS} × ${OPS})`,
      result: `fleet slot ${x.toFixed(0)} µs/op vs gpu-lock ${y.toFixed(0)} µs/op: ratio ${(x / y).toFixed(2)} (PostgreSQL on loopback)`,
      values: { fleet_slot_us: x, gpu_lock_us: y, ratio: x / y },
    },
    {
      benchmark: `${HOSTS} hosts × ${RUNS} runs contending for 1 slot`,
      result: `overlaps ${overlaps} (must be 0); ${rate.toFixed(0)} runs/s`,
      values: { overlaps, runs_per_s: rate },
    },
  ]);
} finally {
  await Promise.all(pools.map((pool) => pool.end()));
  await rm(dir, { recursive: true, force: true });
  await cluster.close();
}
