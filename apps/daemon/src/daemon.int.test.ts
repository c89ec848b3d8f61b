import { existsSync, readFileSync } from "node:fs";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { testdir, until } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { startDaemon } from "./test-fixtures/daemon-process.ts";

const OOM =
  "(EngineCore_DP0 pid=7) ERROR 11-28 03:10:00 [core.py:396] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n";

let debug: (() => string) | null = null;

/**
 * The shared poll, with this test's timing and the daemon's last log lines when it times out. An OOM
 * line to a started canary (screening, gates, lock, baseline, watchdog, stop) took over 40 s once, on
 * CI's two cores shared with a second test run: each wait has 75 s, inside the tests' 120 s.
 */
const waitFor = <T>(check: () => T | false | null | undefined | Promise<T | false | null | undefined>, what: string) =>
  until(check, () => `${what}${debug ? `\n${debug()}` : ""}`, { timeoutMs: 75_000, pollMs: 100 });

async function daemonOn(settings: Record<string, string>, options: { configFile?: boolean } = {}) {
  const site = await createSimSite(await testdir(), { settings, configFile: options.configFile ?? false });
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  // The example env file of contrib/ as the operator would install it; the simulated host's settings override it.
  const daemon = await startDaemon(site, "INFO 11-28 03:00:00 [api_server.py] Starting vLLM API server 0\n");
  const { child, log } = daemon;
  const exited = daemon.exited.then((e) => e.code);
  const stderr = daemon.stderr;
  const base = `http://${site.env.KLR_DAEMON_LISTEN}`;
  // The polls' own request lines would crowd out what the daemon did.
  debug = () =>
    stderr()
      .split("\n")
      .filter((l) => !/"msg":"(incoming request|request completed)"/.test(l))
      .join("\n")
      .slice(-4000);
  await waitFor(() => stderr().includes("Server listening"), "the daemon to listen");
  // The follower starts at the log's end: a line written before it opened the file is not news to it.
  await waitFor(() => stderr().includes("following vLLM's log"), "the daemon to follow vLLM's log");
  const get = async <T>(path: string) => (await (await fetch(`${base}${path}`)).json()) as T;
  const events = async () => (await get<{ events: { event: string; [k: string]: unknown }[] }>("/audit")).events;
  const serves = () =>
    fetch(`${site.env.KLR_VLLM_URL}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"prompt":"ping","max_tokens":1}',
    }).then(
      (r) => r.ok,
      () => false,
    );
  return { site, log, child, exited, base, get, events, serves, stderr };
}

/** A proposed promotion r-auto (vllm_memory_util 0.6) in the host's promotions folder, as a passed canary writes it; answers the folder. */
async function proposeAuto(home: string): Promise<string> {
  const promotions = join(home, "out", "promotions");
  await mkdir(promotions, { recursive: true });
  await writeFile(
    join(promotions, "r-auto.json"),
    JSON.stringify({
      run_id: "r-auto",
      created_at: new Date().toISOString(),
      subsystem: "gpu_allocation",
      candidate: { vllm_memory_util: 0.6, whisper_model_size: "small" },
      path: "quiesced",
      whisper_verified: false,
      llm_latency_ms: 10,
    }),
  );
  return promotions;
}

describe("gpu-canaryd on the simulated host", () => {
  it("an OOM line in the followed log → intent → screening → spare-GPU canary → promotion, visible in /audit and /metrics", async () => {
    const d = await daemonOn({ KLR_ALLOW_SPARE_GPU: "true" });
    expect(await d.get("/status")).toMatchObject({ production: { health: "healthy" }, mode: { canary_mode: "canary", spare_gpu: 1 } });
    // The example env file parses without a warning.
    expect(d.stderr()).not.toContain('"level":"warn"');
    // Before any canary its timings are unknown: left out, not 0; production's health is known.
    const before = await (await fetch(`${d.base}/metrics`)).text();
    expect(before).not.toMatch(/^gpu_canary_last_canary_(ttft_p95|latency)_seconds /m);
    expect(before).toMatch(/^gpu_canary_production_serving 1$/m);
    await appendFile(d.log, OOM);
    const finished = await waitFor(async () => (await d.events()).find((e) => e.event === "tuning_decision"), "the tuning decision");
    expect(finished).toMatchObject({ outcome: "promoted" });
    const kinds = (await d.events()).map((e) => e.event);
    expect(kinds).toEqual(
      expect.arrayContaining(["oom_detected", "intent_created", "canary_started", "run_finished", "promotion_written", "tuning_decision"]),
    );
    expect((await d.get<{ promotions: unknown[] }>("/promotions")).promotions).toHaveLength(1);
    // The counters move once the worker has the result, a moment after the audit line.
    const metrics = await waitFor(async () => {
      const text = await (await fetch(`${d.base}/metrics`)).text();
      return text.includes('gpu_canary_runs_total{result="passed"} 1') && text;
    }, "the run in /metrics");
    expect(metrics).toContain('gpu_canary_oom_events_total{kind="oom_kv_cache"} 1');
    expect(metrics).toMatch(/gpu_canary_last_canary_latency_seconds [\d.]+/);
    expect(metrics).toMatch(/^gpu_canary_run_duration_seconds_count\{result="passed"\} 1$/m);
    expect(metrics).toMatch(/^gpu_canary_promotions\{state="proposed"\} 1$/m);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 120_000);

  it("SIGTERM during a quiesced canary: the run ends safely, production serves, the intent waits again, exit 0", async () => {
    const d = await daemonOn({});
    await appendFile(d.log, OOM);
    await waitFor(async () => (await d.events()).some((e) => e.event === "canary_started"), "the canary to start");
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(await d.serves()).toBe(true);
    expect(existsSync(join(d.site.home, ".kloros", "locks", "gpu_maintenance.lock"))).toBe(false);
    const feed = createAuditFeed({
      dir: join(d.site.home, "out", "orchestration", "epochs"),
      timeZone: d.site.timeZone,
    });
    expect((await feed.query()).map((e) => e.event)).toEqual(expect.arrayContaining(["production_restored", "budget_charged"]));
    expect(d.stderr()).toContain("ending the run in progress safely");
    const pending = join(d.site.home, "out", "orchestration", "intents");
    expect(
      readFileSync(join(pending, (await import("node:fs")).readdirSync(pending).find((n) => n.endsWith(".json")) ?? ""), "utf8"),
    ).toContain("oom_kv_cache");
  }, 120_000);

  it("an unreadable applied.json with KLR_AUTO_APPLY: one warning, not one a poll; an OOM still becomes an intent, worked and failed naming the file", async () => {
    const d = await daemonOn({ KLR_AUTO_APPLY: "true", KLR_ALLOW_SPARE_GPU: "true" }, { configFile: true });
    await proposeAuto(d.site.home);
    const appliedFile = join(d.site.home, ".kloros", "vllm", "applied.json");
    await mkdir(join(d.site.home, ".kloros", "vllm"), { recursive: true });
    await writeFile(appliedFile, "{ torn");
    await waitFor(() => d.stderr().includes("no settings change could be chosen"), "the warning");
    await appendFile(d.log, OOM);
    // the event is not lost: an intent of its own, which the loop (not stopped at the choice) works; its
    // runner, not knowing what production runs, fails it naming the file
    await waitFor(() => d.stderr().includes("the event has an intent of its own"), "the intent");
    const worked = await waitFor(
      () =>
        d
          .stderr()
          .split("\n")
          .find((l) => l.includes('"msg":"intent worked"')),
      "the intent to be worked",
    );
    expect(worked).toContain('"state":"failed"');
    expect(worked).toContain(appliedFile);
    const warnings = d
      .stderr()
      .split("\n")
      .filter((l) => l.includes("no settings change could be chosen"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain(appliedFile);
    expect(d.stderr()).not.toContain("the work loop hit an error");
    expect(d.stderr()).not.toContain("could not record an out-of-memory event");
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 120_000);

  it("KLR_AUTO_APPLY applies the best proposed promotion at the window by itself; POST /rollback goes back", async () => {
    const d = await daemonOn({ KLR_AUTO_APPLY: "true", KLR_CANARY_LOAD_SECONDS: "1" }, { configFile: true });
    const servedUtil = async () => {
      const text = await (await fetch(`${d.site.env.KLR_VLLM_URL}/metrics`)).text();
      return Number(/vllm:cache_config_info\{[^}]*gpu_memory_utilization="([\d.]+)"/.exec(text)?.[1]);
    };
    const promotions = await proposeAuto(d.site.home);
    const applied = await waitFor(async () => (await d.events()).find((e) => e.event === "settings_applied"), "the auto-apply");
    expect(applied).toMatchObject({ from: 0.5, to: 0.6, kind: "apply" });
    expect(await servedUtil()).toBe(0.6);
    const token = readFileSync(join(d.site.home, ".kloros", "daemon.token"), "utf8").trim();
    const asked = await fetch(`${d.base}/rollback`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
    expect(asked.status).toBe(202);
    await waitFor(async () => (await d.events()).filter((e) => e.event === "settings_applied").length === 2, "the rollback");
    expect(await servedUtil()).toBe(0.5);
    // Applied once: the promotion it rolled back is not applied again by itself.
    // Marked once the rollback has ended, a moment after its audit line.
    await waitFor(
      () => (JSON.parse(readFileSync(join(promotions, "r-auto.json"), "utf8")) as { state: string }).state === "rolled_back",
      "the promotion marked rolled_back",
    );
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 120_000);
});
