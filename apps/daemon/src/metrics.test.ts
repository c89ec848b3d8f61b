import { spawnSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { windowAt } from "@gpu-canary/policy";
import type { EvaluationResult } from "@gpu-canary/spica-evaluator";
import { deadPid } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { fullServer } from "./test-fixtures/full-server.ts";

type Server_ = Awaited<ReturnType<typeof fullServer>>;

/** The exposition text parsed: each sample by `name{labels}` (labels as written), and each family's TYPE. */
function parseExposition(text: string) {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1] ?? "", type[2] ?? "");
    if (line === "" || line.startsWith("#")) continue;
    const sample = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!sample) throw new Error(`not a sample line: ${JSON.stringify(line)}`);
    samples.set(sample[1] ?? "", Number(sample[2]));
  }
  return { samples, types };
}

/** GET /metrics from the daemon's server listening on loopback, as Prometheus would. */
async function scrape(s: Server_) {
  if (!s.app.server.listening) {
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    onTestFinished(() => s.app.close());
  }
  const { port } = s.app.server.address() as AddressInfo;
  const response = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  const text = await response.text();
  return { text, ...parseExposition(text) };
}

/** A stand-in production vLLM on loopback: /health and /is_sleeping answer as told. */
async function fakeVllm(state: { health: number; sleeping: boolean }) {
  const server: Server = createServer((request, response) => {
    if (request.url === "/health") response.writeHead(state.health).end();
    else if (request.url === "/is_sleeping")
      response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ is_sleeping: state.sleeping }));
    else response.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function result(status: EvaluationResult["status"], seconds: number, measured: { ttftP95Ms: number; e2eP50Ms: number } | null) {
  const started = Date.parse("2026-11-28T08:00:00Z");
  return {
    runId: `r-${status}-${seconds}`,
    mode: "canary",
    status,
    validationPassed: status === "passed",
    validationReason: "",
    llmLatencyMs: null,
    candidate: { vllmMemoryUtil: 0.8, whisperModelSize: "base" },
    subsystem: "gpu_allocation",
    predicted: null,
    measured: measured && {
      ...measured,
      ttftP50Ms: null,
      itlP50Ms: null,
      itlP95Ms: null,
      samples: 5,
      errors: [],
      productionBaseline: null,
      load: null,
      preemptions: null,
      kvCacheUsagePeak: null,
      canaryServer: null,
      path: "spare",
      downtimeSeconds: null,
    },
    gate: status === "refused" ? "window" : null,
    promotionPath: null,
    startedAt: new Date(started).toISOString(),
    finishedAt: new Date(started + seconds * 1000).toISOString(),
  } satisfies EvaluationResult;
}

const promtool = spawnSync("promtool", ["--version"]).status === 0;

describe("GET /metrics", () => {
  it("leaves out what is not known yet instead of a 0: no canary timings before a canary, no budget or lock it cannot read", async () => {
    const s = await fullServer();
    const fresh = await scrape(s);
    for (const absent of [
      "gpu_canary_last_canary_ttft_p95_seconds",
      "gpu_canary_last_canary_latency_seconds",
      "gpu_canary_last_canary_itl_p95_seconds",
      "gpu_canary_last_canary_preemptions",
      "gpu_canary_last_restore_seconds",
      "gpu_canary_lock_held_seconds",
    ]) {
      expect(fresh.types.get(absent), absent).toBe("gauge");
      expect([...fresh.samples.keys()].filter((k) => k.startsWith(absent))).toEqual([]);
    }
    // What is known on a fresh host is shown, zeros included: no downtime, a free lock, production not answering.
    expect(fresh.samples.get("gpu_canary_downtime_used_seconds")).toBe(0);
    expect(fresh.samples.get("gpu_canary_downtime_left_seconds")).toBe(60);
    expect(fresh.samples.get("gpu_canary_lock_held")).toBe(0);
    expect(fresh.samples.get("gpu_canary_crashed_run_awaiting_recovery")).toBe(0);
    expect(fresh.samples.get("gpu_canary_production_serving")).toBe(0);
    expect(fresh.samples.get("gpu_canary_watchdog_fired_total")).toBe(0);
    expect(fresh.samples.get('gpu_canary_promotions{state="proposed"}')).toBe(0);
    expect(fresh.samples.get("gpu_canary_intents_pending")).toBe(0);
    expect(fresh.samples.get("gpu_canary_downtime_charged_seconds_total")).toBe(0);
    expect(fresh.samples.get("gpu_canary_restore_sla_seconds")).toBe(15);
    // No run, no restore yet: no series at all, not a row of zeros.
    for (const family of ["gpu_canary_runs_finished_total", "gpu_canary_restore_duration_seconds"])
      expect(
        [...fresh.samples.keys()].filter((k) => k.startsWith(family)),
        family,
      ).toEqual([]);

    // A state file that cannot be read makes its series unknown, not 0 (and the scrape still answers).
    await mkdir(s.layout.maintenanceDir, { recursive: true });
    const night = windowAt(s.config.maintenanceWindow, s.config.maintenanceTimeZone, new Date()).night;
    await writeFile(s.layout.budgetFile(night), "{ torn");
    await mkdir(s.layout.locksDir, { recursive: true });
    await writeFile(s.layout.gpuLock, "not a lock record");
    const broken = await scrape(s);
    for (const absent of [
      "gpu_canary_downtime_used_seconds",
      "gpu_canary_downtime_left_seconds",
      "gpu_canary_lock_held",
      "gpu_canary_crashed_run_awaiting_recovery",
    ])
      expect(broken.samples.has(absent), absent).toBe(false);
    expect(broken.samples.get("gpu_canary_window_open")).toBeDefined();
  });

  it("shows a crashed run awaiting recovery, the watchdogs fired across restarts, production serving and promotions by state", async () => {
    const vllm = { health: 200, sleeping: false };
    const s = await fullServer({ KLR_VLLM_URL: await fakeVllm(vllm), KLR_QUIESCE: "sleep" });
    // A run that stopped production and died: only `gpu-canary recover` may take its lock.
    await mkdir(s.layout.locksDir, { recursive: true });
    await writeFile(
      s.layout.gpuLock,
      JSON.stringify({
        pid: deadPid(),
        host: hostname(),
        owner: "gpu-canaryd",
        acquired_at: "2026-11-28T08:00:00Z",
        expires_at: "2099-01-01T00:00:00Z",
        run_id: "r-crashed",
        production_stopped_at: "2026-11-28T08:00:02Z",
      }),
    );
    // Watchdog reports audited by this daemon and by another process (a CLI `recover`).
    const fired = { fired_at: "2026-11-28T08:00:05Z", reason: "armer died", production_serving_at: null, error: null };
    await s.audit.append({ event: "watchdog_fired", run_id: "r-1", ...fired });
    await createAuditFeed({ dir: s.layout.auditDir, timeZone: s.config.maintenanceTimeZone, pid: 4242 }).append({
      event: "watchdog_fired",
      run_id: "r-2",
      ...fired,
    });
    await s.audit.append({ event: "recovery", run_id: "r-2", action: "recovered" });
    await mkdir(s.layout.promotionsDir, { recursive: true });
    const promotion = (runId: string, extra: object = {}) =>
      JSON.stringify({
        run_id: runId,
        created_at: "2026-11-28T08:00:00Z",
        subsystem: "gpu_allocation",
        candidate: { vllm_memory_util: 0.8, whisper_model_size: "base" },
        path: "spare",
        whisper_verified: true,
        llm_latency_ms: 120,
        ...extra,
      });
    await writeFile(join(s.layout.promotionsDir, "r-a.json"), promotion("r-a"));
    await writeFile(join(s.layout.promotionsDir, "r-b.json"), promotion("r-b"));
    await writeFile(join(s.layout.promotionsDir, "r-c.json"), promotion("r-c", { state: "applied" }));
    await writeFile(join(s.layout.promotionsDir, "r-d.json"), promotion("r-d", { state: "launched" }));
    await writeFile(join(s.layout.promotionsDir, "junk.json"), "{");

    const m = await scrape(s);
    expect(m.samples.get("gpu_canary_lock_held")).toBe(1);
    expect(m.samples.get("gpu_canary_crashed_run_awaiting_recovery")).toBe(1);
    expect(m.types.get("gpu_canary_watchdog_fired_total")).toBe("counter");
    expect(m.samples.get("gpu_canary_watchdog_fired_total")).toBe(2);
    expect(m.samples.get("gpu_canary_production_serving")).toBe(1);
    expect(m.samples.get('gpu_canary_promotions{state="proposed"}')).toBe(2);
    expect(m.samples.get('gpu_canary_promotions{state="applied"}')).toBe(1);
    expect(m.samples.get('gpu_canary_promotions{state="rolled_back"}')).toBe(0);
    expect(m.samples.get("gpu_canary_promotion_files_unreadable")).toBe(2);

    // A restarted daemon reads the same count from the trail; one more firing adds one.
    const restarted = await fullServer({ KLR_HOME: s.home, KLR_VLLM_URL: s.config.vllmUrl, KLR_QUIESCE: "sleep" });
    await restarted.audit.append({ event: "watchdog_fired", run_id: "r-3", ...fired });
    expect((await scrape(restarted)).samples.get("gpu_canary_watchdog_fired_total")).toBe(3);
    expect((await scrape(s)).samples.get("gpu_canary_watchdog_fired_total")).toBe(3);

    // A sleeping production answers /health but serves nothing; an engine that reports itself dead serves nothing.
    vllm.sleeping = true;
    expect((await scrape(s)).samples.get("gpu_canary_production_serving")).toBe(0);
    vllm.sleeping = false;
    vllm.health = 503;
    expect((await scrape(s)).samples.get("gpu_canary_production_serving")).toBe(0);
  });

  it("counts runs by mode and verdict, downtime charged and restore durations from the audit trail, whichever process wrote it", async () => {
    const s = await fullServer({ KLR_RESTORE_SLA: "20" });
    const cli = createAuditFeed({ dir: s.layout.auditDir, timeZone: s.config.maintenanceTimeZone, pid: 4242 });
    const candidate = { vllm_memory_util: 0.8, whisper_model_size: "base" };
    // The lines the runs write (spica-gpu-allocation's finish, apply's finished, undoing's chargeOutage, quiesced's and settings-steps' restores).
    await s.audit.append({
      event: "run_finished",
      run_id: "r-1",
      status: "passed",
      mode: "canary",
      subsystem: "gpu_allocation",
      candidate,
      reason: "",
    });
    await s.audit.append({
      event: "run_finished",
      run_id: "r-2",
      status: "refused",
      mode: "canary",
      subsystem: "gpu_allocation",
      candidate,
      reason: "",
      gate: "window",
    });
    await cli.append({
      event: "run_finished",
      run_id: "r-3",
      status: "passed",
      mode: "canary",
      subsystem: "gpu_allocation",
      candidate,
      reason: "",
    });
    await cli.append({ event: "run_finished", run_id: "r-4", status: "rolled_back", mode: "apply", reason: "verification failed" });
    await s.audit.append({
      event: "budget_charged",
      run_id: "r-1",
      date: "2026-11-28",
      seconds: 12.5,
      seconds_used: 12.5,
      max_seconds: 60,
    });
    await cli.append({ event: "budget_charged", run_id: "r-4", date: "2026-11-29", seconds: 30, seconds_used: 30, max_seconds: 60 });
    await s.audit.append({ event: "production_restored", run_id: "r-1", seconds: 8, downtime_seconds: 12.5, already_serving: false });
    await cli.append({ event: "production_restored", run_id: "r-4", seconds: 14, by: "apply" });
    await cli.append({ event: "production_restored", run_id: "r-4", seconds: 25, by: "rollback", already_serving: false });
    // A restore without its seconds (an older line) is no observation.
    await cli.append({ event: "production_restored", run_id: "r-0" });

    const m = await scrape(s);
    expect(m.types.get("gpu_canary_runs_finished_total")).toBe("counter");
    expect(m.samples.get('gpu_canary_runs_finished_total{mode="canary",verdict="passed"}')).toBe(2);
    expect(m.samples.get('gpu_canary_runs_finished_total{mode="canary",verdict="refused"}')).toBe(1);
    expect(m.samples.get('gpu_canary_runs_finished_total{mode="apply",verdict="rolled_back"}')).toBe(1);
    expect(m.samples.has('gpu_canary_runs_finished_total{mode="apply",verdict="passed"}')).toBe(false);
    expect(m.types.get("gpu_canary_downtime_charged_seconds_total")).toBe("counter");
    expect(m.samples.get("gpu_canary_downtime_charged_seconds_total")).toBe(42.5);
    expect(m.types.get("gpu_canary_restore_duration_seconds")).toBe("histogram");
    expect(m.samples.get('gpu_canary_restore_duration_seconds_bucket{le="10",by="canary"}')).toBe(1);
    expect(m.samples.get('gpu_canary_restore_duration_seconds_count{by="canary"}')).toBe(1);
    expect(m.samples.get('gpu_canary_restore_duration_seconds_bucket{le="15",by="apply"}')).toBe(1);
    expect(m.samples.get('gpu_canary_restore_duration_seconds_bucket{le="20",by="rollback"}')).toBe(0);
    expect(m.samples.get('gpu_canary_restore_duration_seconds_bucket{le="30",by="rollback"}')).toBe(1);
    expect(m.samples.get('gpu_canary_restore_duration_seconds_sum{by="rollback"}')).toBe(25);
    // The last restore (25 s) against KLR_RESTORE_SLA (20 s): what the slow-restore alert compares.
    expect(m.samples.get("gpu_canary_last_restore_seconds")).toBe(25);
    expect(m.samples.get("gpu_canary_restore_sla_seconds")).toBe(20);

    // A restarted daemon reads the same from the trail; the next run adds to it.
    const restarted = await fullServer({ KLR_HOME: s.home, KLR_RESTORE_SLA: "20" });
    await restarted.audit.append({ event: "production_restored", run_id: "r-5", seconds: 3, downtime_seconds: 5, already_serving: false });
    await restarted.audit.append({
      event: "run_finished",
      run_id: "r-5",
      status: "failed",
      mode: "canary",
      subsystem: "gpu_allocation",
      candidate,
      reason: "x",
    });
    const again = await scrape(restarted);
    expect(again.samples.get('gpu_canary_runs_finished_total{mode="canary",verdict="passed"}')).toBe(2);
    expect(again.samples.get('gpu_canary_runs_finished_total{mode="canary",verdict="failed"}')).toBe(1);
    expect(again.samples.get('gpu_canary_restore_duration_seconds_count{by="canary"}')).toBe(2);
    expect(again.samples.get("gpu_canary_last_restore_seconds")).toBe(3);
    expect(again.samples.get("gpu_canary_downtime_charged_seconds_total")).toBe(42.5);
  });

  it("says how long the GPU lock has been held, from its record, and nothing while it is free", async () => {
    const s = await fullServer();
    await mkdir(s.layout.locksDir, { recursive: true });
    const acquired = new Date(Date.now() - 90_000);
    await writeFile(
      s.layout.gpuLock,
      JSON.stringify({
        pid: process.pid,
        host: hostname(),
        owner: "gpu-canary",
        acquired_at: acquired.toISOString(),
        expires_at: "2099-01-01T00:00:00Z",
        run_id: "r-live",
      }),
    );
    const m = await scrape(s);
    expect(m.samples.get("gpu_canary_lock_held")).toBe(1);
    expect(m.samples.get("gpu_canary_crashed_run_awaiting_recovery")).toBe(0);
    const held = m.samples.get("gpu_canary_lock_held_seconds") ?? 0;
    expect(held).toBeGreaterThanOrEqual(90);
    expect(held).toBeLessThan(150);
    await rm(s.layout.gpuLock);
    const free = await scrape(s);
    expect(free.samples.get("gpu_canary_lock_held")).toBe(0);
    expect(free.samples.has("gpu_canary_lock_held_seconds")).toBe(false);
  });

  it("shows the last canary's evidence (TTFT and ITL p95, preemptions) from the audit trail, whichever process ran it", async () => {
    const s = await fullServer();
    const cli = createAuditFeed({ dir: s.layout.auditDir, timeZone: s.config.maintenanceTimeZone, pid: 4242 });
    // As test-canary.ts writes it (the load's fields shortened).
    const tested = (extra: object) => ({
      path: "quiesced",
      samples: 5,
      errors: [],
      died: false,
      timed_out: false,
      load: null,
      kv_cache_usage_peak: 0.4,
      ...extra,
    });
    await s.audit.append({ event: "canary_tested", run_id: "r-1", ...tested({ ttft_p95_ms: 350, itl_p95_ms: 45, preemptions: 3 }) });
    const first = await scrape(s);
    expect(first.samples.get("gpu_canary_last_canary_ttft_p95_seconds")).toBe(0.35);
    expect(first.samples.get("gpu_canary_last_canary_itl_p95_seconds")).toBe(0.045);
    expect(first.samples.get("gpu_canary_last_canary_preemptions")).toBe(3);
    // A later canary run from the CLI, whose canary exported no preemption counter: its own evidence, not the first's.
    await cli.append({ event: "canary_tested", run_id: "r-2", ...tested({ ttft_p95_ms: 300, itl_p95_ms: 40, preemptions: null }) });
    const last = await scrape(s);
    expect(last.samples.get("gpu_canary_last_canary_ttft_p95_seconds")).toBe(0.3);
    expect(last.samples.get("gpu_canary_last_canary_itl_p95_seconds")).toBe(0.04);
    expect(last.samples.has("gpu_canary_last_canary_preemptions")).toBe(false);
    // A restarted daemon still knows it.
    const restarted = await fullServer({ KLR_HOME: s.home });
    expect((await scrape(restarted)).samples.get("gpu_canary_last_canary_ttft_p95_seconds")).toBe(0.3);
  });

  it("records each run's length by result in a histogram, and the last canary's latency once there is one", async () => {
    const s = await fullServer();
    s.metrics.recordRun(result("refused", 0.2, null));
    s.metrics.recordRun(result("passed", 42, { ttftP95Ms: 350, e2eP50Ms: 1200 }));
    s.metrics.recordRun(result("passed", 400, { ttftP95Ms: 300, e2eP50Ms: 900 }));
    const m = await scrape(s);
    expect(m.types.get("gpu_canary_run_duration_seconds")).toBe("histogram");
    expect(m.samples.get('gpu_canary_run_duration_seconds_bucket{le="1",result="refused"}')).toBe(1);
    expect(m.samples.get('gpu_canary_run_duration_seconds_bucket{le="60",result="passed"}')).toBe(1);
    expect(m.samples.get('gpu_canary_run_duration_seconds_bucket{le="600",result="passed"}')).toBe(2);
    expect(m.samples.get('gpu_canary_run_duration_seconds_sum{result="passed"}')).toBe(442);
    expect(m.samples.get('gpu_canary_run_duration_seconds_count{result="passed"}')).toBe(2);
    expect(m.samples.get('gpu_canary_runs_total{result="passed"}')).toBe(2);
    expect(m.samples.get('gpu_canary_refusals_total{gate="window"}')).toBe(1);
    // The canary's TTFT comes from the audit trail's canary_tested (see below), not from the run's result.
    expect(m.samples.has("gpu_canary_last_canary_ttft_p95_seconds")).toBe(false);
    expect(m.samples.get("gpu_canary_last_canary_latency_seconds")).toBe(0.9);
  });

  it("passes `promtool check metrics` (Prometheus' own lint of names, units and types)", async (context) => {
    if (!promtool) context.skip("promtool is not installed: `apt-get install prometheus` (Debian) provides it; .ci/run installs it");
    const s = await fullServer();
    const lint = (text: string) => {
      const check = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
      return { status: check.status, output: `${check.stdout}${check.stderr}`.trim() };
    };
    // Before any run (families without samples) and after (every kind of series present).
    expect(lint((await scrape(s)).text)).toEqual({ status: 0, output: "" });
    s.metrics.recordRun(result("passed", 42, { ttftP95Ms: 350, e2eP50Ms: 1200 }));
    s.metrics.recordRun(result("refused", 0.1, null));
    s.metrics.ooms.inc({ kind: "oom_kv_cache" });
    s.metrics.observerErrors.inc();
    expect(lint((await scrape(s)).text)).toEqual({ status: 0, output: "" });
  });
});
