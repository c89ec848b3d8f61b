// pnpm bench (gpu-lock): uncontended acquire+release and contended throughput, side by side
// with proper-lockfile in the same run. Medians of several rounds, with the spread.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { recordBench, runTs } from "@gpu-canary/testing";
import lockfile from "proper-lockfile";
import { createGpuLock } from "../index.ts";

const ROUNDS = 5;
const OPS = 300;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;

async function timeOps(fn: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 20; i += 1) await fn(); // warm-up
  const start = performance.now();
  for (let i = 0; i < OPS; i += 1) await fn();
  return ((performance.now() - start) * 1000) / OPS;
}

const dir = await mkdtemp(join(tmpdir(), "gpu-lock-bench-"));
try {
  const gpuLock = createGpuLock({ path: join(dir, "gpu.lock"), ttlSeconds: 120, owner: "bench" });
  const target = join(dir, "target");
  await writeFile(target, "");
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    ours.push(
      await timeOps(async () => {
        await (await gpuLock.acquire({ waitSeconds: 0 })).release();
      }),
    );
    theirs.push(await timeOps(async () => await (await lockfile.lock(target, { realpath: false }))()));
  }
  const x = median(ours);
  const y = median(theirs);
  process.stdout.write(
    `gpu-lock acquire+release: ${x.toFixed(0)} us/op; proper-lockfile: ${y.toFixed(0)} us/op; ratio ${(x / y).toFixed(2)}\n`,
  );
  process.stdout.write(`  spread over ${ROUNDS} rounds of ${OPS}: gpu-lock ${spread(ours)} us, proper-lockfile ${spread(theirs)} us\n`);

  const contend = async (impl: string) => {
    const runDir = await mkdtemp(join(dir, `${impl}-`));
    const results = await Promise.all(
      Array.from({ length: 4 }, () => runTs(join(import.meta.dirname, "contender.ts"), [impl, runDir, "3000"], { timeoutMs: 60_000 })),
    );
    return results.reduce((sum, r) => sum + Number(r.stdout || 0), 0) / 3;
  };
  const ourRate = await contend("gpu-lock");
  const theirRate = await contend("proper-lockfile");
  process.stdout.write(
    `contended (4 processes, 3 s): gpu-lock ${ourRate.toFixed(0)} acquisitions/s; proper-lockfile ${theirRate.toFixed(0)} acquisitions/s; ratio ${(ourRate / theirRate).toFixed(2)}\n`,
  );
  await recordBench("lock (packages/gpu-lock)", [
    {
      benchmark: `lock acquire+release, uncontended (median of ${ROUNDS} × ${OPS})`,
      result: `gpu-lock ${x.toFixed(0)} µs/op vs proper-lockfile ${y.toFixed(0)} µs/op: ratio ${(x / y).toFixed(2)} (target ≤ 1)`,
      values: { gpu_lock_us: x, proper_lockfile_us: y, ratio: x / y },
    },
    {
      benchmark: "lock, 4 processes contending for 3 s",
      result: `gpu-lock ${ourRate.toFixed(0)}/s vs proper-lockfile ${theirRate.toFixed(0)}/s: ratio ${(ourRate / theirRate).toFixed(2)}`,
      values: { gpu_lock_per_s: ourRate, proper_lockfile_per_s: theirRate },
    },
  ]);
} finally {
  await rm(dir, { recursive: true, force: true });
}
