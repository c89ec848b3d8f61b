import { readFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { shippedArgs, runShipped } from "./test-fixtures/shipped.ts";

/** The CLI as a real process, with an environment free of the caller's KLR_* settings. */
function gpuCanary(args: string[], env: Record<string, string>) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
  return runShipped(args, { env: { ...clean, ...env }, timeoutMs: 30_000 });
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

describe("gpu-canary lock run as processes", () => {
  const script = join(import.meta.dirname, "..", "test", "critical-section.mjs");

  it("runs 12 racing commands one at a time, none lost, exit codes passed through", async () => {
    const home = await testdir();
    await writeFile(join(home, "counter"), "0");
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        gpuCanary(["lock", "run", "--", process.execPath, script, home, String(i % 3)], { KLR_HOME: home }),
      ),
    );
    for (const r of results) expect(r.stderr).toBe("");
    expect(results.map((r) => r.code)).toEqual(Array.from({ length: 12 }, (_, i) => i % 3));
    expect(await readFile(join(home, "counter"), "utf8")).toBe("12");
    const audit = await gpuCanary(["audit", "query", "--event", "lock_acquired", "--json"], { KLR_HOME: home });
    expect(audit.stdout.trim().split("\n")).toHaveLength(12);
  }, 120_000);

  it("forwards SIGTERM to the command and releases the lock when it ends", async () => {
    const home = await testdir();
    const { spawn } = await import("node:child_process");
    const child = spawn(process.execPath, shippedArgs(["lock", "run", "--", "sleep", "30"]), {
      env: { ...process.env, KLR_HOME: home },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    for (let i = 0; i < 100; i += 1) {
      const status = await gpuCanary(["lock", "status", "--json"], { KLR_HOME: home });
      if ((JSON.parse(status.stdout) as { held: boolean }).held) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    child.kill("SIGTERM");
    expect(await exited).toBe(143);
    const after = JSON.parse((await gpuCanary(["lock", "status", "--json"], { KLR_HOME: home })).stdout) as { held: boolean };
    expect(after.held).toBe(false);
  }, 60_000);
});
