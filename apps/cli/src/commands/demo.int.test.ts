import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

/** Processes whose command line names a path under `dir`. */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      const state = /^\S+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, "utf8"))?.[1];
      if (cmdline.includes(dir) && state !== "Z") found.push(`${pid}: ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe("gpu-canary demo", () => {
  it("runs to the end ignoring the caller's settings, and every step it printed is true of the files it keeps", async () => {
    const result = await cli(
      ["demo", "--keep", "--json"],
      { KLR_HOME: "/nonexistent", KLR_CANARY_MODE: "broken-value" },
      new Date().toISOString(),
    );
    const doc = result.json() as { ok: boolean; home: string; steps: { title: string; ok: boolean; summary: string }[] };
    expect(doc.steps.filter((s) => !s.ok)).toEqual([]);
    expect(result.code).toBe(0);
    expect(doc.steps).toHaveLength(9);
    const home = doc.home;
    const night = new Date().toISOString().slice(0, 10).replace(/-/g, "");
    // Quiesced canary and the killed run both charged their downtime.
    const budget = JSON.parse(readFileSync(join(home, ".kloros", "maintenance", `gpu_budget_${night}.json`), "utf8")) as {
      seconds_used: number;
      charges: unknown[];
    };
    expect(budget.charges).toHaveLength(2);
    expect(budget.seconds_used).toBeGreaterThan(0);
    // The watchdog restored production after the SIGKILL; recover released the lock.
    expect(JSON.parse(readFileSync(join(home, ".kloros", "locks", "gpu_maintenance.watchdog.json"), "utf8"))).toMatchObject({
      canary_stopped: true,
      error: null,
    });
    expect(existsSync(join(home, ".kloros", "locks", "gpu_maintenance.lock"))).toBe(false);
    const audit = readFileSync(join(home, "out", "orchestration", "epochs", `gpu_canary_${night}.jsonl`), "utf8");
    for (const event of ["recovery", "oom_detected", "intent_created", "tuning_decision", "promotion_written"])
      expect(audit).toContain(`"event":"${event}"`);
    expect(readdirSync(join(home, "out", "promotions"))).toHaveLength(3);
    expect(readdirSync(join(home, "out", "orchestration", "intents", "processed"))).toHaveLength(1);
    // The summaries tell what the files show.
    expect(doc.steps[5]?.summary).toMatch(/passed; [\d.]+ s of downtime charged/);
    expect(doc.steps[6]?.summary).toMatch(/recover: recovered, [\d.]+ s charged, lock released/);
    expect(doc.steps[7]?.summary).toMatch(/oom_kv_cache → intent i-\S+ → promoted/);
    expect(processesUnder(join(home, ".."))).toEqual([]);
  }, 120_000);
});
