import { existsSync, readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { portState } from "@gpu-canary/vllm-control";
import { until } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { candidate, evaluateProcess, simSite } from "../test-fixtures/evaluate-site.ts";
import { cli } from "../test-fixtures/cli.ts";
import { QUIESCED_RUN_PHASES } from "../test-fixtures/phases.ts";

describe("gpu-canary evaluate", () => {
  it("prints the checklist's lines; --json carries the result; exit codes 0, 1 and 2", async () => {
    const { site, run } = await simSite();
    const text = await run(["evaluate", "--candidate", candidate, "--mode", "predictive"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^Mode: predictive\nStatus: passed\nValidation: true\nReason: fits GPU 0: .*\nLLM latency: n\/a/);
    const json = await run(["evaluate", "--candidate", candidate, "--mode", "predictive", "--json"]);
    expect(json.json()).toMatchObject({ mode: "predictive", status: "passed", validation_passed: true, llm_latency_ms: null });
    const high = await run([
      "evaluate",
      "--candidate",
      '{"vllm_memory_util": 0.95, "whisper_model_size": "small"}',
      "--mode",
      "predictive",
    ]);
    expect(high.code).toBe(1);
    expect(high.stdout).toContain("Reason: vllm_memory_util 0.95 is above the maximum 0.9");
    const malformed = await run(["evaluate", "--candidate", '{"vllm_memory_util": 0.7}', "--json"]);
    expect(malformed.code).toBe(2);
    expect(malformed.json().error).toMatchObject({ code: "CANDIDATE_INVALID" });
    expect((await run(["evaluate", "--candidate", candidate, "--mode", "fast"])).code).toBe(2);
    // Extra vLLM flags a shell would treat as two commands are a settings error at load: nothing runs.
    const shellish = await cli(["evaluate", "--candidate", candidate, "--json"], { ...site.env, KLR_VLLM_EXTRA_ARGS: "--x; rm -rf /" });
    expect(shellish.code).toBe(2);
    expect(shellish.json().error).toMatchObject({ code: "SETTINGS_INVALID", message: expect.stringContaining("KLR_VLLM_EXTRA_ARGS") });
  }, 60_000);

  it("runs a quiesced canary; status, promotions and doctor see its traces", async () => {
    const { site, run, files } = await simSite();
    const result = await run(["evaluate", "--candidate", candidate]);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(
      /Mode: canary\nStatus: passed\nValidation: true\nReason: \d+ requests under the load \(2 in flight of 512 \+ 128 tokens\).*\nLLM latency: [\d.]+ms\nLoad: 2 in flight of 512 \+ 128 tokens; (\d+) of \1 requests completed, \d+ output tokens\/s; 0 preemptions, KV-cache usage peak \d+ %\nLoad shape: concurrency 2, prompt tokens 512, output tokens 128 \(default: production showed none\)\nDowntime: [\d.]+ s charged/,
    );
    const budget = JSON.parse(readFileSync(files.budget, "utf8")) as { seconds_used: number };
    expect(budget.seconds_used).toBeGreaterThan(0);
    const status = (await run(["status", "--json"])).json() as Record<string, Record<string, unknown>>;
    expect(status.budget).toMatchObject({ seconds_used: budget.seconds_used, max_seconds: 60 });
    expect(status.lock).toMatchObject({ held: false, state: "free" });
    expect(status.production).toMatchObject({ health: "healthy", version: "0.11.0" });
    expect(status.window).toMatchObject({ open: true, timezone: site.timeZone });
    const promotions = (await run(["promotions", "list", "--json"])).json() as { promotions: { candidate: unknown; path: string }[] };
    expect(promotions.promotions).toHaveLength(1);
    expect(promotions.promotions[0]).toMatchObject({ candidate: JSON.parse(candidate), path: "quiesced" });
    const doctor = await run(["doctor", "--json"]);
    const checks = (doctor.json() as { checks: { name: string; ok: boolean; detail: string }[] }).checks;
    expect(checks.filter((c) => !c.ok)).toEqual([]);
    expect(doctor.code).toBe(0);
    // The run's own restore is one sample; production's log counts whole seconds, so on a slow second its start may read longer and be the one named.
    const basis = checks.find((c) => c.name === "worst_case_fits_budget")?.detail;
    expect(basis).toMatch(/quiesce [\d.]+ s \(p95 of 1\)/);
    expect(basis).toMatch(/restore [\d.]+ s \((p95 of 1|production's last start in its log)\)/);
  }, 120_000);

  it("SIGTERM mid-run: production restored, downtime charged, lock released, exit 143", async () => {
    const { site, files, events, serves } = await simSite();
    const proc = evaluateProcess(site.env);
    await until(async () => (await events()).some((e) => e.event === "canary_started"), "the canary to start", { timeoutMs: 60_000 });
    proc.child.kill("SIGTERM");
    const { code } = await proc.exited;
    expect(code).toBe(143);
    expect(await serves()).toBe(true);
    expect(existsSync(files.lock)).toBe(false);
    expect(JSON.parse(readFileSync(files.budget, "utf8")).seconds_used).toBeGreaterThan(0);
    expect((await events()).map((e) => e.event)).toEqual(
      expect.arrayContaining(["canary_stopped", "production_restored", "budget_charged", "lock_released"]),
    );
    expect((await events()).at(-1)).toMatchObject({ event: "run_finished", status: "error" });
    expect(proc.output().stdout).toContain('"code": "INTERRUPTED"');
  }, 120_000);

  it("SIGKILL mid-run: the watchdog restores production within the SLA; recover charges the journal's downtime and releases", async () => {
    // Production and canary refuse requests that name no model, as vLLM 0.6 and 0.7 did.
    const { site, files, events, serves, run } = await simSite(true, { requireModel: true });
    const proc = evaluateProcess(site.env);
    await until(async () => (await events()).some((e) => e.event === "canary_started"), "the canary to start", { timeoutMs: 60_000 });
    const killedAt = Date.now();
    proc.child.kill("SIGKILL");
    await proc.exited;
    await until(() => existsSync(files.report), "the watchdog's report", { timeoutMs: 30_000 });
    expect(await serves()).toBe(true);
    expect((Date.now() - killedAt) / 1000).toBeLessThan(15);
    const report = JSON.parse(readFileSync(files.report, "utf8")) as Record<string, unknown>;
    expect(report).toMatchObject({ reason: expect.stringContaining("died"), canary_stopped: true, error: null });
    // The crashed run's lock is kept for recovery: a plain acquirer is refused.
    const locked = await run(["lock", "run", "--wait", "0", "--", "true"]);
    expect(locked.code).toBe(3);
    const recovered = await run(["recover", "--json"]);
    expect(recovered.code).toBe(0);
    const outcome = recovered.json() as { action: string; restored_by: string; charged_seconds: number };
    expect(outcome).toMatchObject({ action: "recovered", restored_by: "watchdog" });
    // The watchdog's firing reaches the audit trail once recovery reads its report.
    expect((await events()).find((e) => e.event === "watchdog_fired")).toMatchObject({
      reason: expect.stringContaining("died"),
      production_serving_at: report.production_serving_at,
      error: null,
    });
    const stoppedAt = Date.parse(String((await events()).find((e) => e.event === "production_stopped")?.ts));
    const servingAt = Date.parse(String(report.production_serving_at));
    // Charged from the journal's quiesce to the watchdog's first completion (the stop event is written after the stop completed).
    expect(outcome.charged_seconds).toBeGreaterThanOrEqual((servingAt - stoppedAt) / 1000);
    expect(JSON.parse(readFileSync(files.budget, "utf8")).seconds_used).toBeCloseTo(outcome.charged_seconds, 3);
    expect(existsSync(files.lock)).toBe(false);
    expect((await run(["recover", "--json"])).json()).toMatchObject({ action: "nothing" });
  }, 120_000);

  it("the run killed the instant its canary starts (its wrapper SIGKILLs it): the watchdog knows the canary and stops it", async () => {
    // Production small enough that an orphaned canary would keep running beside it, unseen.
    const { site, files, events, serves, run } = await simSite(true, { productionUtil: 0.2 });
    // A canary command that kills the run as it starts: the widest gap between launching the canary
    // and the watchdog learning its process group, made deterministic.
    const wrapper = join(site.dir, "vllm-killing-its-caller");
    const pidFile = join(site.dir, "canary.pid");
    await writeFile(wrapper, `#!/bin/sh\necho $$ > ${pidFile}\nkill -9 "$PPID"\nexec ${site.env.KLR_VLLM_COMMAND ?? ""} "$@"\n`, {
      mode: 0o755,
    });
    const proc = evaluateProcess({ ...site.env, KLR_VLLM_COMMAND: wrapper });
    expect((await proc.exited).signal).toBe("SIGKILL");
    await until(() => existsSync(files.report), "the watchdog's report", { timeoutMs: 30_000 });
    const report = JSON.parse(readFileSync(files.report, "utf8")) as Record<string, unknown>;
    expect(report).toMatchObject({ reason: expect.stringContaining("died"), canary_stopped: true, error: null });
    expect(await serves()).toBe(true);
    // The canary is gone: nothing of it on its port, its process dead.
    const canaryPid = Number(readFileSync(pidFile, "utf8"));
    await until(
      () => !existsSync(`/proc/${canaryPid}`) || readFileSync(`/proc/${canaryPid}/stat`, "utf8").includes(") Z "),
      "the canary to be stopped",
      {
        timeoutMs: 5_000,
      },
    );
    expect((await portState(site.canaryPort)).free).toBe(true);
    const recovered = await run(["recover", "--json"]);
    expect(recovered.json()).toMatchObject({ action: "recovered", restored_by: "watchdog", production_serving: true });
    expect((await events()).map((e) => e.event)).toContain("budget_charged");
    expect(existsSync(files.lock)).toBe(false);
  }, 120_000);
});

/** The lines of a progress log on stderr: each `<ISO 8601 UTC to the second> evaluate: <phase or event>[: text]`. */
function progressLog(stderr: string) {
  const lines = stderr.trimEnd().split("\n");
  for (const line of lines) expect(line).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z evaluate: \S/);
  const times = lines.map((line) => Date.parse(line.slice(0, 20)));
  // Each phase once, in order: consecutive lines of one phase (its step, then what happens in it) count once.
  const phases = lines.map((line) => line.slice(31).split(":")[0] ?? "").filter((phase, i, all) => phase !== all[i - 1]);
  return { lines, times, phases };
}

describe("evaluate's progress when stderr is not a terminal (cron, systemd, a pipe)", () => {
  it("one timestamped line per step on stderr, in the run's order; stdout is the result alone, text or JSON", async () => {
    // Two runs back to back: no cooldown between them.
    const { site } = await simSite(true, { settings: { KLR_RATE_LIMIT_COOLDOWN_HOURS: "0" } });
    const startedAt = Math.floor(Date.now() / 1000) * 1000;
    const json = evaluateProcess(site.env);
    expect((await json.exited).code).toBe(0);
    const endedAt = Date.now();
    expect(JSON.parse(json.output().stdout)).toMatchObject({ mode: "canary", status: "passed" });
    const log = progressLog(json.output().stderr);
    expect(log.phases).toEqual([...QUIESCED_RUN_PHASES]);
    expect(log.lines[0]).toContain(`started: candidate ${candidate.replaceAll(" ", "")}`);
    expect(log.lines.find((l) => l.includes(" evaluate: quiescing"))).toContain(
      "quiescing: quiescing production (stop) — the downtime starts now",
    );
    expect(log.lines.at(-1)).toMatch(/ evaluate: finished: canary passed \(exit 0\)$/);
    expect(log.times).toEqual([...log.times].sort((a, b) => a - b));
    expect(log.times[0]).toBeGreaterThanOrEqual(startedAt);
    expect(log.times.at(-1)).toBeLessThanOrEqual(endedAt);

    const text = evaluateProcess(site.env, candidate, []);
    expect((await text.exited).code).toBe(0);
    expect(text.output().stdout).toMatch(
      /^Mode: canary\nStatus: passed\nValidation: true\nReason: .*\nLLM latency: [\d.]+ms\nLoad: .*\nLoad shape: .*\nDowntime: [\d.]+ s charged\nPromotion: .*\nRun: r-\S+\n$/,
    );
    expect(progressLog(text.output().stderr).phases).toEqual(log.phases);
  }, 180_000);

  it("SIGKILLed mid-run: the last line on stderr names the phase the run was in, as its lock's journal does", async () => {
    const { site, files, events } = await simSite();
    const proc = evaluateProcess(site.env);
    await until(async () => (await events()).some((e) => e.event === "canary_started"), "the canary to start", { timeoutMs: 60_000 });
    proc.child.kill("SIGKILL");
    expect((await proc.exited).signal).toBe("SIGKILL");
    const journal = JSON.parse(readFileSync(files.lock, "utf8")) as { phase: string };
    expect(["canary_starting", "testing"]).toContain(journal.phase);
    expect(progressLog(proc.output().stderr).lines.at(-1)).toMatch(new RegExp(` evaluate: ${journal.phase}(:|$)`));
    expect(proc.output().stdout).toBe("");
    // recover as cron or a unit would start it: its own log on stderr, its JSON answer on stdout.
    const now = new Date();
    const recovered = await cli(["recover", "--json"], site.env, now.toISOString(), { stderrIsTTY: false });
    expect(recovered.code).toBe(0);
    expect(recovered.json()).toMatchObject({ action: "recovered" });
    const stamp = now.toISOString().replace(/\.\d+Z$/, "Z");
    expect(recovered.stderr).toBe(`${stamp} recover: started\n${stamp} recover: finished: recovered\n`);
  }, 120_000);
});
