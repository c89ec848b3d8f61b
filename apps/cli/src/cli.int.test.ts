import { readFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runTs, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

const bin = join(import.meta.dirname, "bin.ts");

/** The CLI as a real process, with an environment free of the caller's KLR_* settings. */
function gpuCanary(args: string[], env: Record<string, string>) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
  return runTs(bin, args, { env: { ...clean, ...env }, timeoutMs: 30_000 });
}

describe("gpu-canary as a process", () => {
  it("answers window --json on stdout with nothing on stderr", async () => {
    const home = await testdir();
    const result = await gpuCanary(["window", "--json"], { KLR_HOME: home });
    expect(result.code).toBe(0);
    expect(result.stderr).toBe("");
    expect(JSON.parse(result.stdout)).toMatchObject({ timezone: "America/New_York", window: "03:00-07:00" });
  });

  it("exits 4 on a corrupt budget file and 0 once reset repairs it", async () => {
    const home = await testdir();
    const budgetDir = join(home, ".kloros", "maintenance");
    await mkdir(budgetDir, { recursive: true });
    const night = (JSON.parse((await gpuCanary(["budget", "--json"], { KLR_HOME: home })).stdout) as { date: string }).date;
    const file = join(budgetDir, `gpu_budget_${night}.json`);
    await writeFile(file, "not json at all");
    const broken = await gpuCanary(["budget"], { KLR_HOME: home });
    expect(broken.code).toBe(4);
    expect(broken.stderr).toContain(file);
    expect(await readFile(file, "utf8")).toBe("not json at all");
    expect((await gpuCanary(["budget", "reset", "--yes"], { KLR_HOME: home })).code).toBe(0);
    const repaired = await gpuCanary(["budget", "--json"], { KLR_HOME: home });
    expect(repaired.code).toBe(0);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ seconds_used: 0, seconds_left: 60 });
  });

  it("exits 2 naming the variable of a bad setting from the env file", async () => {
    const home = await testdir();
    await writeFile(join(home, ".kloros_env"), "KLR_CANARY_TIMEOUT=thirty\n");
    const result = await gpuCanary(["config"], { KLR_HOME: home });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`KLR_CANARY_TIMEOUT: expected a number of seconds above 0`);
    expect(result.stderr).toContain(`.kloros_env:1`);
    expect(result.stderr).not.toContain("    at ");
  });
});
