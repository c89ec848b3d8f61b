import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTs, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

const worker = join(import.meta.dirname, "test-fixtures", "counter-worker.ts");

async function race(mode: "lock" | "nolock" | "rmw", workers: number, iterations: number) {
  const dir = await testdir();
  await writeFile(join(dir, "counter"), "0");
  const runs = Array.from({ length: workers }, () => runTs(worker, [dir, String(iterations), mode], { timeoutMs: 120_000 }));
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await writeFile(join(dir, "go"), "");
  const results = await Promise.all(runs);
  return { dir, results };
}

describe("the lock primitive across real processes", () => {
  it("lets 8 processes × 100 critical sections through one at a time with an exact counter", async () => {
    const { dir, results } = await race("lock", 8, 100);
    for (const result of results) expect(result.stderr).toBe("");
    expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
    expect(Number(await readFile(join(dir, "counter"), "utf8"))).toBe(800);
  }, 180_000);

  it("catches the overlap when the same workers run without the lock (negative control)", async () => {
    const { dir, results } = await race("nolock", 8, 50);
    const overlapSeen = results.some((r) => r.code !== 0);
    const count = Number(await readFile(join(dir, "counter"), "utf8"));
    expect(overlapSeen || count < 400).toBe(true);
  }, 180_000);

  it("loses no update when 8 processes run updateJsonState 100 times each", async () => {
    const { dir, results } = await race("rmw", 8, 100);
    expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
    expect(JSON.parse(await readFile(join(dir, "state.json"), "utf8"))).toEqual({ count: 800 });
  }, 180_000);
});
