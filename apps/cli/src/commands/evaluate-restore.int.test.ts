import { existsSync, readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { readingsAgree } from "@gpu-canary/vllm-control";
import { until } from "@gpu-canary/testing";
import { liveProcesses, readHost } from "@gpu-canary/vllm-sim";
import { describe, expect, it } from "vitest";
import { evaluateProcess, simSite } from "../test-fixtures/evaluate-site.ts";
import { cli } from "../test-fixtures/cli.ts";

describe("gpu-canary evaluate when production is slow or hard to bring back", () => {
  it("production that cannot be restored: exit 4, the lock keeps the journal, recover brings it back once it can start", async () => {
    const { site, files, run, serves } = await simSite();
    const proc = evaluateProcess({ ...site.env, KLR_PRODUCTION_START_COMMAND: "echo 'vllm.service: no such image' >&2; exit 1" });
    const { code } = await proc.exited;
    expect(code).toBe(4);
    expect(proc.output().stdout).toContain('"code": "PRODUCTION_NOT_RESTORED"');
    expect(await serves()).toBe(false);
    // The run is over but its journal stays: a plain acquirer is refused, recovery is told.
    const status = (await run(["lock", "status", "--json"])).json();
    expect(status).toMatchObject({ awaits_recovery: true });
    await until(() => existsSync(files.report), "the watchdog's (failed) attempt", { timeoutMs: 30_000 });
    // A recover that cannot restore either keeps the crashed run's journal for the next one.
    const failing = await cli(
      ["recover", "--json"],
      { ...site.env, KLR_PRODUCTION_START_COMMAND: "echo 'still broken' >&2; exit 1" },
      new Date().toISOString(),
    );
    expect(failing.code).toBe(4);
    expect(failing.json().error).toMatchObject({ code: "PRODUCTION_NOT_RESTORED" });
    expect((await run(["lock", "status", "--json"])).json()).toMatchObject({ awaits_recovery: true, stale: true });
    expect(existsSync(files.budget) ? JSON.parse(readFileSync(files.budget, "utf8")).seconds_used : 0).toBe(0);
    const recovered = await run(["recover", "--json"]);
    expect(recovered.code).toBe(0);
    expect(recovered.json()).toMatchObject({ action: "recovered", restored_by: "recover", production_serving: true });
    expect(await serves()).toBe(true);
    expect(existsSync(files.lock)).toBe(false);
    expect(JSON.parse(readFileSync(files.budget, "utf8")).seconds_used).toBeGreaterThan(0);
  }, 120_000);

  it("a recover that cannot charge (damaged budget file) keeps the journal; after the repair the next one charges without restarting production", async () => {
    const { site, files, run, serves, events } = await simSite();
    const proc = evaluateProcess(site.env);
    await until(async () => (await events()).some((e) => e.event === "canary_started"), "the canary to start", { timeoutMs: 60_000 });
    proc.child.kill("SIGKILL");
    await proc.exited;
    await until(() => existsSync(files.report), "the watchdog's report", { timeoutMs: 30_000 });
    await until(serves, "production to serve again", { timeoutMs: 30_000 });
    const pid = await site.productionPid();
    await mkdir(dirname(files.budget), { recursive: true });
    await writeFile(files.budget, "{damaged");
    const failing = await run(["recover", "--json"]);
    expect(failing.code).toBe(4);
    expect(failing.json().error).toMatchObject({ code: "BUDGET_UNREADABLE" });
    expect((await run(["lock", "status", "--json"])).json()).toMatchObject({ awaits_recovery: true, stale: true });
    // The operator's repair, then the hint's command.
    await writeFile(files.budget, '{"seconds_used": 0}');
    const recovered = await run(["recover", "--json"]);
    expect(recovered.code).toBe(0);
    expect(recovered.json()).toMatchObject({ action: "recovered", restored_by: "watchdog", production_serving: true });
    expect(await site.productionPid()).toBe(pid);
    expect(JSON.parse(readFileSync(files.budget, "utf8")).seconds_used).toBeGreaterThan(0);
    expect(existsSync(files.lock)).toBe(false);
  }, 120_000);

  it("production loading in 20 s, a canary in 35 s: refused up front when the budget cannot hold the logged start, else done inside it — never killed mid-restore", async () => {
    const { site, files, events, run } = await simSite(false, { settings: { KLR_GPU_MAINTENANCE_MAX_DOWNTIME: "55" } });
    // Production's log shows a 20 s start before any run measured a restore.
    await site.startProduction({ PRODUCTION_STARTUP_DELAY_MS: "20000" });
    const slow = { PRODUCTION_STARTUP_DELAY_MS: "20000", SIM_STARTUP_DELAY_MS: "35000" };

    const refused = evaluateProcess({ ...site.env, ...slow });
    expect((await refused.exited).code).toBe(3);
    expect(JSON.parse(refused.output().stdout)).toMatchObject({
      status: "refused",
      validation_reason: expect.stringMatching(/budget gate: .*restore 2\d(\.\d)? s \(production's last start in its log\)/),
    });
    const checks = ((await run(["doctor", "--json"])).json() as { checks: { name: string; ok: boolean; fix: string | null }[] }).checks;
    expect(checks.find((c) => c.name === "canary_timeout_covers_start")).toMatchObject({
      ok: false,
      fix: expect.stringMatching(/set KLR_CANARY_TIMEOUT to at least 3[78] \(or lower KLR_CANARY_LOAD_SECONDS\)/),
    });
    expect(checks.find((c) => c.name === "worst_case_fits_budget")).toMatchObject({ ok: false });

    // The worst case is 5 + 30 + 5 + the logged start (20 s and a little more on a busy machine): 65 s holds it.
    const budget = 65;
    const proc = evaluateProcess({ ...site.env, ...slow, KLR_GPU_MAINTENANCE_MAX_DOWNTIME: String(budget) });
    expect((await proc.exited).code).toBe(1);
    expect(JSON.parse(proc.output().stdout)).toMatchObject({ status: "inconclusive" });
    const trail = await events();
    // The watchdog's deadline (budget left less the estimate) passed mid-restore: it waited for that start.
    expect(existsSync(files.report)).toBe(false);
    expect(trail.map((e) => e.event)).not.toContain("watchdog_fired");
    const restored = trail.find((e) => e.event === "production_restored");
    const charged = trail.find((e) => e.event === "budget_charged");
    const estimateError = Math.max(0, Number(restored?.seconds) - 20);
    expect(Number(charged?.seconds)).toBeLessThanOrEqual(budget + estimateError + 0.5);
    expect(trail.filter((e) => e.event === "run_finished")).toHaveLength(2);
    expect(existsSync(files.lock)).toBe(false);
  }, 300_000);

  it("SIGKILL with Whisper switched to the candidate's size: the watchdog switches it back and waits for its memory to be steady before production restarts; recover leaves it", async () => {
    // Both Whisper switches and their steady waits count in the run's worst case: a budget that affords them.
    // A Whisper that loads slowly: its memory moves for 3 s after each start (vLLM ≥ 0.29 aborts a start
    // beside one that gives memory back, vllm-project/vllm#56830).
    const { site, files, events, serves, run } = await simSite(false, {
      whisper: "small",
      whisperRampMs: 3000,
      settings: { KLR_GPU_MAINTENANCE_MAX_DOWNTIME: "300" },
    });
    await site.startWhisper();
    // Production's Whisper has loaded before the run begins, as on a host that serves.
    await until(async () => (await site.whisperSteadyTimes()).length === 1, "Whisper to hold still", { timeoutMs: 10_000 });
    await site.startProduction();
    const proc = evaluateProcess(site.env, JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "base" }));
    await until(async () => (await events()).some((e) => e.event === "canary_started"), "the canary to start", { timeoutMs: 90_000 });
    proc.child.kill("SIGKILL");
    await proc.exited;
    const report = await until(
      () => existsSync(files.report) && (JSON.parse(readFileSync(files.report, "utf8")) as Record<string, unknown>),
      "the watchdog's report",
      { timeoutMs: 60_000 },
    );
    // Production started only once the Whisper the watchdog started held still: by the report (written once
    // production serves) that Whisper — the third start: production's size, the candidate's, production's
    // again — had said it held still, and production served after that...
    const steadyTimes = await site.whisperSteadyTimes();
    expect(steadyTimes).toHaveLength(3);
    expect(Date.parse(report.production_serving_at as string)).toBeGreaterThanOrEqual(steadyTimes[2]?.getTime() ?? NaN);
    expect(report).toMatchObject({ whisper_restored: true, whisper_steady: { steady: true }, error: null });
    // ...and after nvidia-smi read it until two readings in a row agreed, at small's footprint.
    const { readings_mib: readings } = report.whisper_steady as { readings_mib: number[] };
    const [before, last] = readings.slice(-2);
    expect(last).toBe(2048);
    expect(readingsAgree(before ?? NaN, 2048)).toBe(true);
    expect(readings.length).toBeGreaterThan(2);
    expect(await serves()).toBe(true);
    const whispers = () =>
      liveProcesses(readHost(site.hostFile))
        .filter((p) => p.name.startsWith("whisper"))
        .map((p) => p.name);
    expect(whispers()).toEqual(["whisper-server (small)"]);
    const recovered = await run(["recover", "--json"]);
    expect(recovered.json()).toMatchObject({ action: "recovered", restored_by: "watchdog" });
    const trail = await events();
    expect(trail.find((e) => e.event === "watchdog_fired")).toMatchObject({ whisper_restored: true, whisper_steady: { steady: true } });
    // One switch there (by the run), one back (by the watchdog, in its report): recover switched nothing.
    expect(trail.filter((e) => e.event === "whisper_switched")).toHaveLength(1);
    expect(whispers()).toEqual(["whisper-server (small)"]);
  }, 180_000);
});
