import { mkdir, readFile, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { deadPid, runTs, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

const worker = join(import.meta.dirname, "test-fixtures", "lock-worker.ts");

async function start(mode: string, workers: number, count = 0) {
  const dir = await testdir();
  await mkdir(join(dir, "locks"), { recursive: true });
  await writeFile(join(dir, "counter"), "0");
  return { dir, runs: Array.from({ length: workers }, () => runTs(worker, [mode, dir, String(count)], { timeoutMs: 170_000 })) };
}

async function go(dir: string) {
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await writeFile(join(dir, "go"), "");
}

describe("the GPU lock across real processes", () => {
  it("lets 8 processes × 100 acquisitions through one at a time, the counter exact", async () => {
    const { dir, runs } = await start("count", 8, 100);
    await go(dir);
    const results = await Promise.all(runs);
    for (const r of results) expect(r.stderr).toBe("");
    expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
    expect(Number(await readFile(join(dir, "counter"), "utf8"))).toBe(800);
    expect(JSON.parse(await readFile(join(dir, "locks", "gpu_maintenance.generation"), "utf8")).generation).toBeGreaterThanOrEqual(800);
  }, 180_000);

  it("hands a SIGKILLed holder's lock to the next acquirer", async () => {
    const { dir } = await start("none", 0);
    const crashed = await runTs(worker, ["crash", dir], { timeoutMs: 30_000 });
    expect(crashed.signal).toBe("SIGKILL");
    expect(crashed.stdout).toBe("holding\n");
    const record = JSON.parse(await readFile(join(dir, "locks", "gpu_maintenance.lock"), "utf8"));
    expect(record.purpose).toBe("about to crash");
    const { runs } = { runs: [runTs(worker, ["once", dir], { timeoutMs: 30_000 })] };
    await writeFile(join(dir, "go"), "");
    expect((await runs[0])?.stdout).toBe("won");
  }, 60_000);

  it("gives a stale record to exactly one of 8 racing processes", async () => {
    const { dir, runs } = await start("once", 8);
    const dead = deadPid();
    await writeFile(
      join(dir, "locks", "gpu_maintenance.lock"),
      JSON.stringify({
        pid: dead,
        host: hostname(),
        owner: "gone",
        acquired_at: "2026-11-28T08:00:00Z",
        expires_at: "2099-01-01T00:00:00Z",
      }),
    );
    await go(dir);
    const results = await Promise.all(runs);
    expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
    expect(results.filter((r) => r.stdout === "won")).toHaveLength(1);
    expect(results.filter((r) => r.stdout === "lost")).toHaveLength(7);
  }, 60_000);
});
