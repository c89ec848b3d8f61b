import { spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { nightOf } from "@gpu-canary/policy";
import { type Probe, Prober, testdir, until } from "@gpu-canary/testing";
import { applySiteOptions, createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { shippedArgs } from "../test-fixtures/shipped.ts";
import { cli } from "../test-fixtures/cli.ts";

/** Production's traffic as the demo sends it: 8 requests in flight of ~2,000 prompt tokens; util 0.15 cannot hold them. */
const TRAFFIC = { concurrency: 8, promptTokens: 2000, outputTokens: 500, requests: 24, background: true };

/**
 * Every stretch a client saw production down, summed: each from its first failed probe to the
 * sending of the next one that got a completion (production took it, so it was back: how long that
 * completion then waited beside production's own traffic is latency, not downtime — on a busy machine
 * it was half a second over two stretches). A probe that ran into its 1 s timeout reached a production
 * that was up but slow (a verification's load on a tight KV cache): degraded, not down — it neither
 * begins nor ends a stretch, unless `slowIsDown`: then every stretch a client was not served counts
 * (an engine told to stop under load keeps its port while it drains, and its clients wait).
 */
function downSeconds(probes: readonly Probe[], slowIsDown = false): number {
  let total = 0;
  let downSince: number | null = null;
  for (const p of probes) {
    if (!p.ok && p.doneAt - p.sentAt >= 900 && !slowIsDown) continue;
    if (!p.ok && downSince === null) downSince = p.sentAt;
    if (p.ok && downSince !== null) {
      total += (p.sentAt - downSince) / 1000;
      downSince = null;
    }
  }
  return total;
}

async function simSite() {
  const site = await createSimSite(
    await testdir(),
    // Latency is loose (applySiteOptions): these tests are about what an apply does, and a verification
    // that fails is made to fail by its KV cache (preemptions); the latency rules have their own tests.
    applySiteOptions(
      { KLR_RATE_LIMIT_MAX_RUNS: "10", KLR_RATE_LIMIT_COOLDOWN_HOURS: "0" },
      {
        tokenLatencyMs: 1,
        traffic: TRAFFIC,
        // As vLLM before 0.8 does: a request naming no model is refused, so every step of an apply and
        // its rollback (verification, restore, watchdog, recover) must name production's model.
        requireModel: true,
      },
    ),
  );
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
  const layout = layoutFor(config);
  const night = nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date());
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const run = (argv: string[], env: Record<string, string> = {}) => cli(argv, { ...site.env, ...env }, new Date().toISOString());
  const servedUtil = async () => {
    const text = await (await fetch(`${site.env.KLR_VLLM_URL}/metrics`)).text();
    return Number(/vllm:cache_config_info\{[^}]*gpu_memory_utilization="([\d.]+)"/.exec(text)?.[1]);
  };
  const configFile = site.vllmConfigFile ?? "";
  const budgetUsed = () => (JSON.parse(readFileSync(layout.budgetFile(night), "utf8")) as { seconds_used: number }).seconds_used;
  /** A promotion as a passed canary writes it (the tests force a candidate the canary would not pass). */
  const promote = async (runId: string, util: number, fingerprint?: Record<string, unknown>) => {
    await mkdir(layout.promotionsDir, { recursive: true });
    await writeFile(
      join(layout.promotionsDir, `${runId}.json`),
      JSON.stringify({
        run_id: runId,
        created_at: new Date().toISOString(),
        subsystem: "gpu_allocation",
        candidate: { vllm_memory_util: util, whisper_model_size: config.whisperSize },
        path: "quiesced",
        whisper_verified: false,
        llm_latency_ms: 12,
        ...(fingerprint ? { fingerprint } : {}),
      }),
    );
  };
  const promotion = (runId: string) =>
    JSON.parse(readFileSync(join(layout.promotionsDir, `${runId}.json`), "utf8")) as { state: string; state_reason?: string };
  return { site, layout, audit, run, servedUtil, configFile, budgetUsed, promote, promotion };
}

describe("apply and rollback on a production that starts with --config", () => {
  it("apply: production serves the promoted utilization, verified under load; applied.json, the history and the audit trail agree; rollback goes back", async () => {
    const s = await simSite();
    const before = await readFile(s.configFile, "utf8");
    await s.promote("r-good", 0.8);
    const prober = new Prober(s.site.env.KLR_VLLM_URL ?? "", s.site.modelPath);
    const applied = await s.run(["apply", "r-good", "--json"]);
    const probed = downSeconds(await prober.stop());
    expect(applied.json(), applied.stdout).toMatchObject({ status: "applied", from: 0.7, to: 0.8 });
    expect(applied.code).toBe(0);
    expect(await s.servedUtil()).toBe(0.8);
    // The production it restarted refuses a request naming no model (vLLM before 0.8): the apply's verification named it.
    const unnamed = await fetch(`${s.site.env.KLR_VLLM_URL}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "ping", max_tokens: 1 }),
    });
    expect(unnamed.status).toBe(404);
    // Only the tuned key changed: the operator's other keys stay as they were.
    expect(await readFile(s.configFile, "utf8")).toBe(before.replace("gpu-memory-utilization: 0.7", "gpu-memory-utilization: 0.8"));
    const record = JSON.parse(readFileSync(s.layout.appliedFile, "utf8")) as Record<string, unknown>;
    expect(record).toMatchObject({
      vllm_memory_util: 0.8,
      promotion_run_id: "r-good",
      previous: { vllm_memory_util: 0.7, promotion_run_id: null },
    });
    expect(readFileSync(record.file as string, "utf8")).toBe(await readFile(s.configFile, "utf8"));
    expect(s.promotion("r-good").state).toBe("applied");
    // `production` agrees: serving, the file and what is applied all say 0.8.
    expect((await s.run(["production", "--json"])).json()).toMatchObject({
      serving: { gpu_memory_utilization: 0.8 },
      config_file: { gpu_memory_utilization: 0.8 },
      applied: { gpu_memory_utilization: 0.8, promotion_run_id: "r-good", previous: { gpu_memory_utilization: 0.7 } },
      newest_promotion: { run_id: "r-good", changes: [] },
      problems: [],
    });
    const history = readdirSync(s.layout.vllmHistoryDir);
    expect(history.some((f) => f.endsWith("-r-good.yaml"))).toBe(true);
    const events = await s.audit.query();
    const runId = (applied.json() as { run_id: string }).run_id;
    const mine = events.filter((e) => e.run_id === runId).map((e) => e.event);
    expect(mine).toEqual(
      expect.arrayContaining([
        "production_stopped",
        "production_restored",
        "canary_tested",
        "budget_charged",
        "settings_applied",
        "run_finished",
      ]),
    );
    // The charge is the outage: from the stop to the first completion with the new settings.
    const charged = events.find((e) => e.event === "budget_charged" && e.run_id === runId)?.seconds as number;
    expect(charged).toBeGreaterThan(0);
    expect(s.budgetUsed()).toBeCloseTo(charged, 3);
    // Within 0.5 s of the outage a client of production saw.
    expect(Math.abs(charged - probed)).toBeLessThan(0.5);

    const back = await s.run(["rollback", "--json"]);
    expect(back.json(), back.stdout).toMatchObject({ status: "applied", from: 0.8, to: 0.7 });
    expect(back.code).toBe(0);
    expect(await s.servedUtil()).toBe(0.7);
    expect(await readFile(s.configFile, "utf8")).toBe(before);
    expect(JSON.parse(readFileSync(s.layout.appliedFile, "utf8"))).toMatchObject({
      vllm_memory_util: 0.7,
      previous: { vllm_memory_util: 0.8, promotion_run_id: "r-good" },
    });
    expect(s.promotion("r-good")).toMatchObject({ state: "rolled_back", state_reason: expect.stringContaining("gpu-canary rollback") });
    // A rolled-back promotion is not applied again without a new canary.
    const again = await s.run(["apply", "r-good", "--json"]);
    expect(again.code).toBe(3);
    expect(again.json().error?.message).toContain("promotion r-good is rolled_back");
  }, 180_000);

  // vLLM's own record of a KV cache it could not fit (vllm/v1/core/kv_cache_utils.py), as the observer's tests quote it.
  const OOM =
    "(EngineCore_DP0 pid=7) ERROR 12-07 03:10:00 [core.py:396] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n";

  it("an out-of-memory event within the watch after an apply rolls it back: at the window while production serves, at once when it is down", async () => {
    const s = await simSite();
    const before = await readFile(s.configFile, "utf8");
    await s.promote("r-watched", 0.8);
    expect((await s.run(["apply", "r-watched", "--json"])).code).toBe(0);
    const log = join(s.site.dir, "oom.log");
    await writeFile(log, OOM);
    // Serving, window closed: the intent waits for the window (deferred); production keeps the applied settings.
    const closed = { KLR_GPU_MAINTENANCE_WINDOW: "00:00-00:01" };
    expect((await s.run(["observe", "--from", log, "--json"], closed)).code).toBe(0);
    const waits = await s.run(["tune", "--json"], closed);
    expect(waits.json()).toMatchObject({ state: "pending", status: "deferred" });
    expect(await s.servedUtil()).toBe(0.8);
    // Down (its own OOM exit): rolled back at once, the window closed all the same, and charged.
    await s.site.stopProduction();
    const rolled = await s.run(["tune", "--json"], closed);
    expect(rolled.json()).toMatchObject({ state: "processed", status: "rolled_back" });
    expect(await s.servedUtil()).toBe(0.7);
    expect(await readFile(s.configFile, "utf8")).toBe(before);
    expect(s.promotion("r-watched")).toMatchObject({
      state: "rolled_back",
      state_reason: expect.stringContaining("No available memory for the cache blocks"),
    });
    // The tuning runner does not propose the rolled-back candidate again on this host.
    expect(s.budgetUsed()).toBeGreaterThan(0);
  }, 180_000);

  it("a promotion whose canary ran on another host is stale: refused (exit 3) and marked, production untouched", async () => {
    const s = await simSite();
    const before = await readFile(s.configFile, "utf8");
    const fingerprint = {
      vllm_version: "0.6.3",
      gpu_name: null,
      gpu_total_mib: null,
      model_config_sha256: null,
      whisper_size: "small",
      kv_cache_dtype: null,
      tuned_flags: {},
    };
    await s.promote("r-old", 0.8, fingerprint);
    const result = await s.run(["apply", "r-old", "--json"]);
    expect(result.code).toBe(3);
    expect(result.json().error).toMatchObject({ code: "PROMOTION_STALE", message: expect.stringMatching(/vLLM version 0\.6\.3 → \d/) });
    expect(s.promotion("r-old").state).toBe("stale");
    expect(await readFile(s.configFile, "utf8")).toBe(before);
    expect(existsSync(s.layout.appliedFile)).toBe(false);
  }, 120_000);

  it("refuses plainly without KLR_VLLM_CONFIG, or for a promotion that does not exist", async () => {
    const s = await simSite();
    const missing = await s.run(["apply", "r-nothing", "--json"]);
    expect(missing.code).toBe(2);
    expect(missing.json().error?.code).toBe("PROMOTION_NOT_FOUND");
    const env = Object.fromEntries(Object.entries(s.site.env).filter(([key]) => key !== "KLR_VLLM_CONFIG"));
    const unset = await cli(["apply", "r-nothing", "--json"], env, new Date().toISOString());
    expect(unset.code).toBe(2);
    expect(unset.json().error?.code).toBe("NO_VLLM_CONFIG");
    const nothing = await s.run(["rollback", "--json"]);
    expect(nothing.code).toBe(3);
    expect(nothing.json().error?.code).toBe("NOTHING_TO_ROLL_BACK");
  }, 120_000);

  it("a promotion that fails its verification under production's load is rolled back by itself: exit 1, production on the previous file", async () => {
    const s = await simSite();
    const before = await readFile(s.configFile, "utf8");
    await s.promote("r-tight", 0.15);
    const prober = new Prober(s.site.env.KLR_VLLM_URL ?? "", s.site.modelPath);
    const result = await s.run(["apply", "r-tight", "--json"]);
    const probes = await prober.stop();
    const probed = downSeconds(probes);
    expect(result.json()).toMatchObject({
      status: "rolled_back",
      from: 0.7,
      to: 0.15,
      reason: expect.stringMatching(/verification failed/),
    });
    expect(result.code).toBe(1);
    expect(await s.servedUtil()).toBe(0.7);
    expect(await readFile(s.configFile, "utf8")).toBe(before);
    // Nothing recorded as applied but what production had before.
    expect(JSON.parse(readFileSync(s.layout.appliedFile, "utf8"))).toMatchObject({ vllm_memory_util: 0.7, promotion_run_id: null });
    const events = await s.audit.query();
    expect(events.find((e) => e.event === "settings_rolled_back")).toMatchObject({ from: 0.15, to: 0.7 });
    expect(s.promotion("r-tight")).toMatchObject({ state: "rolled_back", state_reason: expect.stringMatching(/verification failed/) });
    // Both outages charged: the restart with the new file and the rollback's.
    const charged = events.find((e) => e.event === "budget_charged")?.seconds as number;
    expect(s.budgetUsed()).toBeCloseTo(charged, 3);
    // Never under the outage a client saw by more than the apply's margin. The rollback's part is counted
    // from its stop command, while the engine, draining the verification's load, keeps its port and its
    // clients wait: above, the charge is held to the time clients were not served at all (CI on a busy
    // machine: 5.77 s charged where refused probes showed 2.15 s).
    expect(charged).toBeGreaterThan(probed - 0.5);
    expect(charged).toBeLessThan(downSeconds(probes, true) + 1.5);
    expect(existsSync(s.layout.gpuLock)).toBe(false);
  }, 180_000);

  // Killed as each step begins (its progress line off a terminal names it): the watchdog, then `recover`, leave
  // production on the previous file, serving, the lock free and any outage charged.
  it.each(["settings_writing", "quiescing", "starting", "verifying", "keeping"])(
    "SIGKILL at %s: production ends on the previous file, serving; recover finishes",
    async (phase) => {
      const s = await simSite();
      const before = await readFile(s.configFile, "utf8");
      await s.promote("r-killed", 0.8);
      const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
      // A long verification load keeps the run at `verifying` long enough to be killed there.
      const child = spawn(process.execPath, shippedArgs(["apply", "r-killed", "--json"]), {
        env: { ...clean, ...s.site.env, KLR_CANARY_LOAD_SECONDS: phase === "verifying" ? "20" : "1" },
        stdio: ["ignore", "pipe", "pipe"],
      });
      onTestFinished(() => void child.kill("SIGKILL"));
      let stderr = "";
      child.stderr.on("data", (c: Buffer) => {
        stderr += c.toString();
        if (stderr.includes(` apply: ${phase}`)) child.kill("SIGKILL");
      });
      const exited = new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_code, signal) => resolve(signal)));
      expect(await exited).toBe("SIGKILL");
      // Killed as `keeping` begins, the change may have been kept a moment before: either way all agree.
      const kept =
        phase === "keeping" && !(await until(() => existsSync(s.layout.watchdogReport), "", { timeoutMs: 10_000 }).catch(() => false));
      if (!kept) await until(() => existsSync(s.layout.watchdogReport), "the watchdog's report", { timeoutMs: 90_000 });
      // A watchdog that could not restore says why in its report.
      if (!kept) expect(JSON.parse(readFileSync(s.layout.watchdogReport, "utf8"))).toMatchObject({ error: null });
      const util = kept ? 0.8 : 0.7;
      const file = kept ? before.replace("gpu-memory-utilization: 0.7", "gpu-memory-utilization: 0.8") : before;
      expect(await s.servedUtil()).toBe(util);
      expect(await readFile(s.configFile, "utf8")).toBe(file);
      const recovered = await s.run(["recover", "--json"]);
      expect(recovered.json()).toMatchObject({ production_serving: true });
      expect(existsSync(s.layout.gpuLock)).toBe(false);
      expect(await readFile(s.configFile, "utf8")).toBe(file);
      expect(JSON.parse(readFileSync(s.layout.appliedFile, "utf8"))).toMatchObject({ vllm_memory_util: util });
      const events = await s.audit.query();
      expect(events.filter((e) => e.event === "run_finished")).toHaveLength(1);
      // Stopped production is charged, from the stop to the previous settings serving again.
      if (phase !== "settings_writing") {
        expect(recovered.json()).toMatchObject({ action: "recovered", restored_by: kept ? "already_serving" : "watchdog" });
        expect(s.budgetUsed()).toBeGreaterThan(0);
      }
    },
    120_000,
  );
});
