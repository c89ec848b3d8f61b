import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { loadConfig, requireConfig } from "@gpu-canary/config";
import { nightOf } from "@gpu-canary/policy";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";
import { statusPageOf } from "../test-fixtures/status-page.ts";

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
    // A failed demo prints its report, then the error's JSON after it: read the report, to show the step that failed.
    const doc = JSON.parse(result.stdout.split(/\n(?=\{)/)[0] ?? "") as {
      ok: boolean;
      home: string;
      env_file: string;
      steps: { title: string; ok: boolean; summary: string }[];
    };
    expect(doc.steps.filter((s) => !s.ok)).toEqual([]);
    expect(result.code).toBe(0);
    expect(doc.steps).toHaveLength(13);
    const home = doc.home;
    // The kept folder carries the demo's settings: its window and zone name the night, as they do for the product.
    const { config } = requireConfig(loadConfig({ env: { KLR_HOME: home }, homeDir: home }));
    const audit = await createAuditFeed({
      dir: join(home, "out", "orchestration", "epochs"),
      timeZone: config.maintenanceTimeZone,
    }).query();
    const charges = audit.filter((e) => e.event === "budget_charged");
    const nights = charges.map((e) => nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date(e.ts)));
    expect(charges.map((e) => e.date)).toEqual(nights);
    const night = nights[0] ?? "no charge";
    // Quiesced canary, the killed run and the two applies all charged their downtime, to the same night.
    expect(new Set(nights).size).toBe(1);
    const budget = JSON.parse(readFileSync(join(home, ".kloros", "maintenance", `gpu_budget_${night}.json`), "utf8")) as {
      seconds_used: number;
      charges: unknown[];
    };
    expect(budget.charges).toHaveLength(4);
    expect(budget.seconds_used).toBeGreaterThan(0);
    // The watchdog restored production after the SIGKILL; recover released the lock.
    expect(JSON.parse(readFileSync(join(home, ".kloros", "locks", "gpu_maintenance.watchdog.json"), "utf8"))).toMatchObject({
      canary_stopped: true,
      error: null,
    });
    expect(existsSync(join(home, ".kloros", "locks", "gpu_maintenance.lock"))).toBe(false);
    expect(audit.map((e) => e.event)).toEqual(
      expect.arrayContaining([
        "recovery",
        "oom_detected",
        "intent_created",
        "tuning_decision",
        "promotion_written",
        "settings_applied",
        "settings_rolled_back",
      ]),
    );
    expect(readdirSync(join(home, "out", "promotions"))).toHaveLength(3);
    expect(readdirSync(join(home, "out", "orchestration", "intents", "processed"))).toHaveLength(1);
    // The summaries tell what the files show.
    expect(doc.steps[1]?.summary).toMatch(
      /^production's \/metrics: 8 requests running, \d+ finished of \d+ prompt \+ \d+ generated tokens/,
    );
    expect(doc.steps[7]?.summary).toMatch(/passed; [\d.]+ s of downtime charged/);
    expect(doc.steps[8]?.summary).toMatch(/recover: recovered, [\d.]+ s charged, lock released/);
    const tuned = /oom_kv_cache → intent i-\S+ → promoted \(vllm_memory_util ([\d.]+), Whisper \S+\): promotion (\S+)$/.exec(
      doc.steps[9]?.summary ?? "",
    );
    expect(tuned, doc.steps[9]?.summary).not.toBeNull();
    const [, promotedUtil, promotedRun] = tuned ?? [];

    // The promotion applied at the window: production's --config file says it, applied.json records it, production serves it.
    const applyStep =
      /^applied \(run (\S+)\): gpu_memory_utilization 0\.7 → ([\d.]+), production's \/metrics serve ([\d.]+); [\d.]+ s of downtime charged/.exec(
        doc.steps[10]?.summary ?? "",
      );
    expect(applyStep, doc.steps[10]?.summary).not.toBeNull();
    const [, applyRun, appliedTo, servedAfterApply] = applyStep ?? [];
    expect([appliedTo, servedAfterApply]).toEqual([promotedUtil, promotedUtil]);
    const promotionOf = (runId: string) =>
      JSON.parse(readFileSync(join(home, "out", "promotions", `${runId}.json`), "utf8")) as {
        state: string;
        state_reason?: string;
        candidate: { vllm_memory_util: number };
      };
    expect(promotionOf(promotedRun ?? "")).toMatchObject({ state: "applied", candidate: { vllm_memory_util: Number(promotedUtil) } });
    expect(JSON.parse(readFileSync(join(home, ".kloros", "vllm", "applied.json"), "utf8"))).toMatchObject({
      vllm_memory_util: Number(promotedUtil),
      promotion_run_id: promotedRun,
      run_id: applyRun,
      previous: { vllm_memory_util: 0.7, promotion_run_id: null },
    });
    expect(config.vllmConfigFile).toBeDefined();
    expect(readFileSync(config.vllmConfigFile ?? "", "utf8")).toContain(`gpu-memory-utilization: ${promotedUtil}`);

    // The forced promotion of 0.15 failed its verification under the load and was rolled back by itself.
    expect(doc.steps[11]?.title).toMatch(/forced.*bypassing/);
    const rolled =
      /^ROLLED BACK by itself \(exit 1, run (\S+)\): ([\d.]+) → 0\.15 failed its verification, production serves ([\d.]+) again; promotion forced-tight-0\.15 is rolled_back; [\d.]+ s of downtime charged/.exec(
        doc.steps[11]?.summary ?? "",
      );
    expect(rolled, doc.steps[11]?.summary).not.toBeNull();
    const [, rollbackRun, rolledFrom, servedAfterRollback] = rolled ?? [];
    expect([rolledFrom, servedAfterRollback]).toEqual([promotedUtil, promotedUtil]);
    expect(promotionOf("forced-tight-0.15")).toMatchObject({
      state: "rolled_back",
      state_reason: expect.stringMatching(/verification failed/),
      candidate: { vllm_memory_util: 0.15 },
    });
    expect(audit.find((e) => e.event === "settings_rolled_back")).toMatchObject({
      run_id: rollbackRun,
      from: 0.15,
      to: Number(promotedUtil),
    });
    expect(audit.find((e) => e.event === "run_finished" && e.run_id === rollbackRun)).toMatchObject({
      status: "rolled_back",
      reason: expect.stringMatching(/^verification failed: \d+ preemptions under the load/),
    });
    // Nothing recorded as applied but what production had before the forced one: the promoted file, still on disk.
    expect(JSON.parse(readFileSync(join(home, ".kloros", "vllm", "applied.json"), "utf8"))).toMatchObject({ run_id: applyRun });

    // Under production's load: the tight candidate failed on its preemptions, as printed; the passing canaries had none.
    type Tested = {
      run_id: string;
      preemptions: number | null;
      kv_cache_usage_peak: number | null;
      load: { concurrency: number; basis: string };
    };
    type Finished = { run_id: string; status: string; reason: string; candidate?: { vllm_memory_util: number } };
    const tested = audit.filter((e) => e.event === "canary_tested") as unknown as Tested[];
    const finished = audit.filter((e) => e.event === "run_finished") as unknown as Finished[];
    const tight = /^FAILED \(run (\S+)\): (\d+) preemptions under production's load, KV-cache peak (\d+) %; no promotion$/.exec(
      doc.steps[6]?.summary ?? "",
    );
    expect(tight, doc.steps[6]?.summary).not.toBeNull();
    const [, tightRun, preemptions, peak] = tight ?? [];
    expect(finished.find((e) => e.run_id === tightRun)).toMatchObject({
      status: "failed",
      candidate: { vllm_memory_util: 0.15 },
      reason: expect.stringMatching(
        new RegExp(
          `^${preemptions} preemptions under the load \\(8 in flight of \\d+ \\+ \\d+ tokens\\), above 0 \\(KLR_CANARY_MAX_PREEMPTIONS\\)`,
        ),
      ),
    });
    const tightTested = tested.find((e) => e.run_id === tightRun);
    expect(tightTested?.preemptions).toBe(Number(preemptions));
    expect(tightTested?.preemptions).toBeGreaterThan(0);
    expect(Math.round((tightTested?.kv_cache_usage_peak ?? 0) * 100)).toBe(Number(peak));
    expect(tightTested?.load).toMatchObject({ concurrency: 8, basis: expect.stringContaining("(production's /metrics") });
    const promoted = readdirSync(join(home, "out", "promotions")).map(
      (f) =>
        JSON.parse(readFileSync(join(home, "out", "promotions", f), "utf8")) as { run_id: string; candidate: { vllm_memory_util: number } },
    );
    expect(promoted.map((p) => p.run_id)).not.toContain(tightRun);
    // The only promotion of 0.15 is the one the demo forced by hand, rolled back.
    expect(promoted.filter((p) => p.candidate.vllm_memory_util === 0.15).map((p) => p.run_id)).toEqual(["forced-tight-0.15"]);
    // The spare and the quiesced canary passed under the same load, without a preemption.
    const passed = new Set(finished.filter((e) => e.status === "passed").map((e) => e.run_id));
    const passedTested = tested.filter((e) => passed.has(e.run_id));
    expect(passedTested.length).toBeGreaterThanOrEqual(3);
    for (const t of passedTested) {
      expect(t.preemptions).toBe(0);
      expect(t.load.concurrency).toBe(8);
    }
    expect(processesUnder(join(home, ".."))).toEqual([]);

    // An operator's shell, sourcing the env file the demo kept: `gpu-canary` as the guide writes it
    // answers from the kept simulated host, whatever KLR_* settings that shell exported before.
    const shell = execFileSync(
      "bash",
      ["-c", 'source "$1" && gpu-canaryd --version >&2 && gpu-canary status --json', "bash", doc.env_file],
      {
        cwd: tmpdir(),
        env: {
          // Without any gpu-canary of its own: the one the env file puts on PATH must answer.
          PATH: (process.env.PATH ?? "/usr/bin:/bin")
            .split(":")
            .filter((d) => !existsSync(join(d, "gpu-canary")) && !existsSync(join(d, "gpu-canaryd")))
            .join(":"),
          HOME: tmpdir(),
          // The clock the demo ran under (`pnpm test:midnight` fakes it with libfaketime): the
          // shell's gpu-canary must read the same night.
          ...Object.fromEntries(
            Object.entries(process.env).filter(
              (e): e is [string, string] => (e[0] === "LD_PRELOAD" || e[0].startsWith("FAKETIME")) && e[1] !== undefined,
            ),
          ),
          KLR_HOME: "/nonexistent",
          KLR_ENV_FILE: "/nonexistent/.kloros_env",
          KLR_VLLM_URL: "http://127.0.0.1:1",
        },
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    const status = JSON.parse(shell) as {
      budget: { date: string; seconds_used: number };
      gpus: { name: string }[];
      production: { url: string };
    };
    expect(status.budget).toMatchObject({ date: night, seconds_used: budget.seconds_used });
    expect(status.gpus.map((g) => g.name)).toEqual(["NVIDIA H200", "NVIDIA H200"]);
    expect(status.production.url).toBe(config.vllmUrl);

    // The daemon's status page on the demo's folder, in Debian's chromium: every run the night finished, its
    // promotions and its budget, as the daemon's JSON says them; the screenshot is the README's.
    const page = await statusPageOf(doc.env_file, "status-page-demo-night.png");
    expect(page.problems).toEqual([]);
    expect(page.runsFinished).toBe(finished.length);
    expect(page.runRows).toBe(Math.min(finished.length, 10));
    expect(page.newestRun).toBe(page.newestRunFinished);
    expect([page.promotionRows, page.promotions]).toEqual([3, 3]);
    expect(page.budgetUsedSeconds).toBe(budget.seconds_used);
    expect(page.budgetUsedText).toBe(`${Math.round(budget.seconds_used * 10) / 10} s`);
    expect(page.exitCode).toBe(0);
  }, 240_000);
});
