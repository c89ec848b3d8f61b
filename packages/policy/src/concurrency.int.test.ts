import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTs, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

const worker = join(import.meta.dirname, "test-fixtures", "policy-worker.ts");

async function race(mode: string, workers: number, count: number) {
  const dir = await testdir();
  await writeFile(join(dir, "gpu_budget_20261128.json"), '{"seconds_used": 0}');
  const runs = Array.from({ length: workers }, () => runTs(worker, [mode, dir, String(count)], { timeoutMs: 120_000 }));
  await new Promise((resolve) => setTimeout(resolve, 1500));
  await writeFile(join(dir, "go"), "");
  const results = await Promise.all(runs);
  for (const result of results) expect(result.stderr).toBe("");
  expect(results.map((r) => r.code)).toEqual(Array(workers).fill(0));
  return { dir, results };
}

describe("policy stores under many processes", () => {
  it("loses no charge when 8 processes charge 25 runs each", async () => {
    const { dir } = await race("charge", 8, 25);
    const file = JSON.parse(await readFile(join(dir, "gpu_budget_20261128.json"), "utf8"));
    expect(file.seconds_used).toBe(50);
    expect(file.charges).toHaveLength(200);
  }, 180_000);

  it("loses charges when the same read-modify-write runs without the lock (negative control)", async () => {
    const { dir } = await race("unguarded", 8, 25);
    const file = JSON.parse(await readFile(join(dir, "gpu_budget_20261128.json"), "utf8"));
    expect(file.seconds_used).toBeLessThan(50);
  }, 180_000);

  it("admits exactly the maximum when 8 processes race for runs", async () => {
    const { dir, results } = await race("admit", 8, 3);
    expect(results.reduce((sum, r) => sum + Number(r.stdout), 0)).toBe(3);
    const file = JSON.parse(await readFile(join(dir, "rate_limits.json"), "utf8"));
    expect(file.subsystems.gpu_allocation.runs).toHaveLength(3);
  }, 180_000);
});
