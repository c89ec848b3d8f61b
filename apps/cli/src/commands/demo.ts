import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import type { GlobalOptions, Io } from "../io.ts";
import { runCli } from "../program.ts";
import { type KeptDemo, keepDemo, selfArgv, shellArg } from "./demo-keep.ts";

interface StepResult {
  /** one line: what the step showed */
  summary: string;
  /** a few lines of the commands' own output */
  detail?: string;
}

interface Step {
  title: string;
  run: () => Promise<StepResult>;
}

class DemoStepError extends Error {}

const candidate = (util: number, whisper: string) => JSON.stringify({ vllm_memory_util: util, whisper_model_size: whisper });

/**
 * Production's traffic, as in issue 14: 8 requests in flight of about 2,000 prompt tokens (and 500
 * generated), kept up in the background so production's /metrics show its shape. A candidate at
 * util 0.15 leaves the simulated vLLM a KV cache of about 9,000 tokens: it cannot hold them.
 */
const TRAFFIC = { concurrency: 8, promptTokens: 2000, outputTokens: 500, requests: 24, background: true };
const TIGHT_UTIL = 0.15;
/** The promotion the demo writes by hand for TIGHT_UTIL: no canary passed it, so its apply fails verification. */
const FORCED_RUN = "forced-tight-0.15";

interface MeasuredLoadJson {
  concurrency: number;
  prompt_tokens: number;
  output_tokens: number;
  basis: string;
  requests_completed: number;
  requests_failed: number;
  output_tokens_per_second: number;
}

/** A canary's evidence under the load, in one line: its shape and where it came from, what it did, vLLM's own counts. */
function loadEvidence(measured: {
  load: MeasuredLoadJson | null;
  preemptions: number | null;
  kv_cache_usage_peak: number | null;
  ttft_p95_ms: number | null;
}): string {
  const l = measured.load;
  if (!l) return "no load ran (the canary never served)";
  const peak = measured.kv_cache_usage_peak === null ? "?" : `${Math.round(measured.kv_cache_usage_peak * 100)} %`;
  return [
    `load: ${l.basis}`,
    `${l.requests_completed} requests completed (${l.requests_failed} failed), ${l.output_tokens_per_second} output tokens/s, TTFT p95 ${measured.ttft_p95_ms === null ? "?" : Math.round(measured.ttft_p95_ms)} ms, ${measured.preemptions ?? "?"} preemptions, KV-cache peak ${peak}`,
  ].join("\n");
}

/** The last value of a metric (summed over its labels) in a Prometheus text page. */
function metric(page: string, name: string): number | null {
  let total: number | null = null;
  for (const line of page.split("\n")) {
    const m = /^(\S+?)(?:\{[^}]*\})? (\S+)$/.exec(line);
    if (m && m[1] === name) total = (total ?? 0) + Number(m[2]);
  }
  return total;
}

/**
 * The whole system on a simulated GPU host, start to finish: production vLLM under traffic, doctor
 * and status, predictive screening, a spare-GPU canary passing under production's load and one whose
 * KV cache cannot hold it failing on its preemptions, a quiesced canary with its downtime charged, a run
 * killed mid-way and brought back by the watchdog and `recover`, an OOM line becoming an intent
 * and a promotion, that promotion applied to production's --config file at the window and verified,
 * a bad promotion forced and rolled back by itself, then the audit trail and the promotions. It
 * ignores the caller's KLR_* settings, so it never touches a real vLLM or GPU.
 */
export async function runDemo(options: GlobalOptions & { keep?: boolean }, io: Io): Promise<number> {
  const { applySiteOptions, createSimSite } = await import("@gpu-canary/vllm-sim");
  const dir = await mkdtemp(join(tmpdir(), "gpu-canary-demo-"));
  // The host an apply is tested on (applySiteOptions): production on its `--config` file at 0.7, a
  // one-second load, and latency limits loose — the simulated host's latency follows the machine's
  // load, not the candidate, and the demo's verdicts come from the KV cache (the tight candidate
  // preempts), so a busy machine cannot fail the roomy one. The tight candidate (0.15) must be allowed
  // to run, production's requests must fit its max_model_len, and the demo runs several canaries.
  const site = await createSimSite(
    dir,
    applySiteOptions(
      { KLR_RATE_LIMIT_MAX_RUNS: "10", KLR_RATE_LIMIT_COOLDOWN_HOURS: "0" },
      // A simulated token every millisecond: the load's requests drain in about a second.
      { tokenLatencyMs: 1, traffic: TRAFFIC },
    ),
  );
  const out = (text: string) => {
    if (!options.json) io.stdout(text);
  };
  const cli = async (argv: string[], extra: Record<string, string> = {}) => {
    let stdout = "";
    let stderr = "";
    const code = await runCli(argv, {
      ...io,
      env: { ...site.env, ...extra },
      homeDir: site.home,
      // Real processes run beside these commands (the killed run, the watchdog): one real clock for all.
      now: () => new Date(),
      isTTY: false,
      stdout: (t) => (stdout += t),
      stderr: (t) => (stderr += t),
      onSignal: () => () => undefined,
    });
    return { code, stdout, stderr };
  };
  const json = async <T>(argv: string[], extra: Record<string, string> = {}, expect: number[] = [0]) => {
    const r = await cli([...argv, "--json"], extra);
    if (!expect.includes(r.code))
      throw new DemoStepError(`gpu-canary ${argv.join(" ")} exited ${r.code}: ${r.stdout.trim() || r.stderr.trim()}`);
    return JSON.parse(r.stdout) as T;
  };
  // The demo's events may fall on two day files (a run across midnight in the maintenance zone): read them all.
  const audit = createAuditFeed({
    dir: join(site.home, "out", "orchestration", "epochs"),
    timeZone: site.timeZone,
  });
  const auditEvents = () => audit.query();
  type Result = {
    run_id: string;
    status: string;
    validation_reason: string;
    llm_latency_ms: number | null;
    measured: {
      path: string;
      downtime_seconds: number | null;
      load: MeasuredLoadJson | null;
      preemptions: number | null;
      kv_cache_usage_peak: number | null;
      ttft_p95_ms: number | null;
    } | null;
    predicted: { kv_tokens: number } | null;
  };
  /** What `apply --json` answers. */
  type Applied = {
    status: string;
    run_id: string;
    from: number | null;
    to: number;
    reason: string;
    downtime_seconds: number | null;
    history_file: string | null;
    applied: { vllm_memory_util: number | null; promotion_run_id: string | null } | null;
  };
  type Promotions = {
    promotions: {
      run_id: string;
      state: string;
      state_reason?: string;
      candidate: { vllm_memory_util: number; whisper_model_size: string };
      path: string | null;
      passes: { run_id: string }[];
    }[];
  };
  /**
   * What production serves with now, from its own /metrics (`gpu-canary production`'s serving column).
   * Just restarted under its traffic on a busy machine, its /metrics may miss `production`'s 3 s
   * timeout once: asked again for a while, its problems named if it never answers.
   */
  const served = async () => {
    for (const deadline = Date.now() + 20_000; ; await sleep(250)) {
      const p = await json<{ serving: { gpu_memory_utilization: number | null } | null; problems: string[] }>(["production"]);
      const util = p.serving?.gpu_memory_utilization;
      if (typeof util === "number") return util;
      if (Date.now() > deadline)
        throw new DemoStepError(`production does not say what it serves with: ${p.problems.join("; ") || "no vllm:cache_config_info"}`);
    }
  };
  const tonight = async () => {
    const b = await json<{ seconds_used: number; max_seconds: number }>(["budget"]);
    return `budget ${b.seconds_used.toFixed(1)} of ${b.max_seconds} s used tonight`;
  };
  /** The promotion the tuning runner wrote (or added its pass to), applied in the next step. */
  let promoted: { runId: string; util: number; whisper: string } | null = null;

  const steps: Step[] = [
    {
      title: "start a simulated production vLLM (Llama-3.1-8B on an H200, gpu_memory_utilization 0.7)",
      run: async () => {
        await site.startProduction();
        return { summary: `production serves on ${site.env.KLR_VLLM_URL}; a spare H200 is GPU 1 (all simulated: nothing real is touched)` };
      },
    },
    {
      title: `production's traffic: ${TRAFFIC.concurrency} clients keep ~${TRAFFIC.promptTokens}-token prompts in flight (${TRAFFIC.outputTokens} tokens generated each)`,
      run: async () => {
        // The background clients have just begun: read until they are all in flight (a few ms), as a canary's look will.
        let page = "";
        let running: number | null = null;
        for (const deadline = Date.now() + 5000; Date.now() < deadline && (running ?? 0) < TRAFFIC.concurrency; await sleep(50)) {
          page = await fetch(`${site.env.KLR_VLLM_URL}/metrics`).then((r) => r.text());
          running = metric(page, "vllm:num_requests_running");
        }
        const count = metric(page, "vllm:request_prompt_tokens_count");
        const prompt = metric(page, "vllm:request_prompt_tokens_sum");
        const output = metric(page, "vllm:request_generation_tokens_sum");
        if (!running || !count || prompt === null || output === null)
          throw new DemoStepError(`production's /metrics show no traffic (running ${running}, requests ${count})`);
        return {
          summary: `production's /metrics: ${running} requests running, ${count} finished of ${Math.round(prompt / count)} prompt + ${Math.round(output / count)} generated tokens on average; canaries are tested under this shape`,
        };
      },
    },
    {
      title: "doctor: the checklist's prerequisites and whether the limits work together",
      run: async () => {
        const doc = await json<{ ok: boolean; checks: { name: string; ok: boolean; detail: string }[] }>(["doctor"]);
        if (!doc.ok)
          throw new DemoStepError(
            `doctor failed: ${doc.checks
              .filter((c) => !c.ok)
              .map((c) => `${c.name}: ${c.detail}`)
              .join("; ")}`,
          );
        // Production's unit starts it with `--config` (the file an apply changes) and no tuned flag beside it.
        const config = doc.checks.find((c) => c.name === "production_config");
        if (!config) throw new DemoStepError("doctor did not check production's --config file (production_config)");
        return {
          summary: `${doc.checks.length} checks pass`,
          detail: [config, ...doc.checks.slice(-3).filter((c) => c !== config)].map((c) => `PASS ${c.name}: ${c.detail}`).join("\n"),
        };
      },
    },
    {
      title: "status: window, budget, lock, rate limits and production in one view",
      run: async () => {
        const r = await cli(["status"]);
        return { summary: "read-only, exit 0", detail: r.stdout.trim().split("\n").slice(0, 4).join("\n") };
      },
    },
    {
      title: "predictive mode: candidates checked by arithmetic only — no downtime, no GPU work",
      run: async () => {
        const rows: string[] = [];
        for (const [util, whisper] of [
          [0.6, "small"],
          [0.75, "small"],
          [0.9, "large-v3"],
          [0.95, "small"],
        ] as const) {
          const r = await json<Result>(["evaluate", "--mode", "predictive", "--candidate", candidate(util, whisper)], {}, [0, 1]);
          rows.push(
            `${String(util).padEnd(5)} ${whisper.padEnd(9)} ${r.status.padEnd(7)} ${r.predicted ? `${r.predicted.kv_tokens} KV tokens` : ""}  ${r.validation_reason.slice(0, 90)}`,
          );
        }
        return { summary: "which fit, which do not, and why", detail: `util  whisper   status\n${rows.join("\n")}` };
      },
    },
    {
      title: "canary on the spare GPU: a real (simulated) vLLM tested with streamed completions; production untouched",
      run: async () => {
        const pid = await site.productionPid();
        const r = await json<Result>(["evaluate", "--candidate", candidate(0.75, "small")], { KLR_ALLOW_SPARE_GPU: "true" });
        if (r.status !== "passed" || (await site.productionPid()) !== pid)
          throw new DemoStepError(`the spare canary should pass without touching production: ${r.validation_reason}`);
        if (r.measured?.load?.concurrency !== TRAFFIC.concurrency || r.measured.preemptions !== 0)
          throw new DemoStepError(`the spare canary should run production's load without preemptions: ${JSON.stringify(r.measured?.load)}`);
        return {
          summary: `passed on GPU 1 under production's load, median latency ${r.llm_latency_ms ?? "?"} ms, no downtime charged`,
          detail: `${r.validation_reason}\n${loadEvidence(r.measured)}`,
        };
      },
    },
    {
      title: `a candidate whose KV cache cannot hold production's traffic (vllm_memory_util ${TIGHT_UTIL}), on the spare GPU`,
      run: async () => {
        const r = await json<Result>(["evaluate", "--candidate", candidate(TIGHT_UTIL, "small")], { KLR_ALLOW_SPARE_GPU: "true" }, [1]);
        if (r.status !== "failed" || !r.measured?.preemptions)
          throw new DemoStepError(`the tight candidate should fail on its preemptions: ${r.status}: ${r.validation_reason}`);
        return {
          summary: `FAILED (run ${r.run_id}): ${r.measured.preemptions} preemptions under production's load, KV-cache peak ${Math.round((r.measured.kv_cache_usage_peak ?? 0) * 100)} %; no promotion`,
          detail: `${r.validation_reason}\n${loadEvidence(r.measured)}`,
        };
      },
    },
    {
      title: "quiesced canary inside the maintenance window: production stopped, canary tested, production restored",
      run: async () => {
        const r = await json<Result>(["evaluate", "--candidate", candidate(0.8, "small")]);
        if (r.status !== "passed") throw new DemoStepError(`the quiesced canary should pass: ${r.validation_reason}`);
        const budget = await json<{ seconds_used: number; max_seconds: number }>(["budget"]);
        return {
          summary: `passed; ${r.measured?.downtime_seconds?.toFixed(1) ?? "?"} s of downtime charged (budget ${budget.seconds_used.toFixed(1)} of ${budget.max_seconds} s used tonight)`,
          detail: r.measured ? `${r.validation_reason}\n${loadEvidence(r.measured)}` : r.validation_reason,
        };
      },
    },
    {
      title: "a run killed with SIGKILL mid-way: the restore watchdog brings production back, `recover` finishes the job",
      run: async () => {
        const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KLR_")));
        const child = spawn(process.execPath, [...selfArgv(), "evaluate", "--json", "--candidate", candidate(0.85, "small")], {
          env: { ...clean, ...site.env },
          stdio: "ignore",
        });
        const deadline = Date.now() + 40_000;
        const started = (await auditEvents()).length;
        while (!(await auditEvents()).slice(started).some((e) => e.event === "canary_started")) {
          if (Date.now() > deadline || child.exitCode !== null) throw new DemoStepError("the run to kill never started its canary");
          await sleep(100);
        }
        child.kill("SIGKILL");
        const report = join(site.home, ".kloros", "locks", "gpu_maintenance.watchdog.json");
        while (!existsSync(report)) {
          if (Date.now() > deadline + 30_000) throw new DemoStepError("the watchdog did not restore production");
          await sleep(100);
        }
        const w = JSON.parse(readFileSync(report, "utf8")) as { reason: string; restore_seconds: number | null };
        const rec = await json<{ action: string; charged_seconds: number | null; restored_by: string }>(["recover"]);
        return {
          summary: `watchdog: "${w.reason}", production serving again after ${w.restore_seconds?.toFixed(1) ?? "?"} s; recover: ${rec.action}, ${rec.charged_seconds?.toFixed(1) ?? "?"} s charged, lock released`,
        };
      },
    },
    {
      title: "an out-of-memory line in vLLM's log becomes an intent, and the tuning runner answers it",
      run: async () => {
        const log = join(dir, "vllm.log");
        await writeFile(
          log,
          "INFO 11-28 03:10:00 [gpu_worker.py:298] Available KV cache memory: 6.51 GiB\n" +
            "ERROR 11-28 03:10:02 [core.py:396] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n",
        );
        const observed = await cli(["observe", "--from", log, "--json"]);
        const event = JSON.parse(observed.stdout.trim().split("\n")[0] ?? "{}") as { kind?: string; intent_id?: string };
        if (!event.intent_id) throw new DemoStepError(`observe found no event: ${observed.stdout}${observed.stderr}`);
        const tuned = await json<{
          status: string;
          reason: string;
          chosen: { vllm_memory_util: number; whisper_model_size: string } | null;
          result: { run_id: string } | null;
        }>(["tune"], {
          KLR_ALLOW_SPARE_GPU: "true",
        });
        const runId = tuned.result?.run_id;
        const promotion = (await json<Promotions>(["promotions"])).promotions.find(
          (p) => p.run_id === runId || p.passes.some((pass) => pass.run_id === runId),
        );
        if (tuned.status !== "promoted" || !promotion)
          throw new DemoStepError(`the tuning runner should promote a candidate: ${tuned.status}: ${tuned.reason}`);
        promoted = {
          runId: promotion.run_id,
          util: promotion.candidate.vllm_memory_util,
          whisper: promotion.candidate.whisper_model_size,
        };
        return {
          summary: `${event.kind} → intent ${event.intent_id} → ${tuned.status}${tuned.chosen ? ` (vllm_memory_util ${tuned.chosen.vllm_memory_util}, Whisper ${tuned.chosen.whisper_model_size})` : ""}: promotion ${promoted.runId}`,
          detail: tuned.reason,
        };
      },
    },
    {
      title: "apply the promotion at the window: production's --config file changed, production restarted and verified under its load",
      run: async () => {
        if (!promoted) throw new DemoStepError("the tuning step left no promotion to apply");
        const a = await json<Applied>(["apply", promoted.runId]);
        const now = await served();
        if (a.status !== "applied" || now !== promoted.util)
          throw new DemoStepError(`production should serve ${promoted.util} after the apply: ${a.status}, serving ${now}: ${a.reason}`);
        return {
          summary: `applied (run ${a.run_id}): gpu_memory_utilization ${a.from ?? "?"} → ${a.to}, production's /metrics serve ${now}; ${a.downtime_seconds?.toFixed(1) ?? "?"} s of downtime charged (${await tonight()})`,
          detail: [
            a.reason,
            `applied.json: vllm_memory_util ${a.applied?.vllm_memory_util ?? "?"} from promotion ${a.applied?.promotion_run_id ?? "?"}; the file as applied: ${a.history_file ?? "?"}`,
          ].join("\n"),
        };
      },
    },
    {
      title: `a bad promotion, forced: vllm_memory_util ${TIGHT_UTIL} written by hand, bypassing the canary it failed, to show the rollback`,
      run: async () => {
        if (!promoted) throw new DemoStepError("the tuning step left no promotion to apply");
        // As a passed canary writes a promotion; no canary passed this one: it is forced, to show what a bad apply does.
        await writeFile(
          join(site.home, "out", "promotions", `${FORCED_RUN}.json`),
          JSON.stringify({
            run_id: FORCED_RUN,
            created_at: new Date().toISOString(),
            subsystem: "gpu_allocation",
            candidate: { vllm_memory_util: TIGHT_UTIL, whisper_model_size: promoted.whisper },
            path: "quiesced",
            whisper_verified: false,
            llm_latency_ms: null,
          }),
        );
        const a = await json<Applied>(["apply", FORCED_RUN], {}, [1]);
        const now = await served();
        const state = (await json<Promotions>(["promotions"])).promotions.find((p) => p.run_id === FORCED_RUN);
        if (a.status !== "rolled_back" || now !== promoted.util || state?.state !== "rolled_back")
          throw new DemoStepError(
            `the forced promotion should be rolled back by itself to ${promoted.util}: ${a.status}, serving ${now}, promotion ${state?.state ?? "missing"}: ${a.reason}`,
          );
        return {
          summary: `ROLLED BACK by itself (exit 1, run ${a.run_id}): ${a.from ?? "?"} → ${a.to} failed its verification, production serves ${now} again; promotion ${FORCED_RUN} is rolled_back; ${a.downtime_seconds?.toFixed(1) ?? "?"} s of downtime charged (${await tonight()})`,
          detail: a.reason,
        };
      },
    },
    {
      title: "the audit trail and the promotions: every step left a line",
      run: async () => {
        const events = await auditEvents();
        const counts = new Map<string, number>();
        for (const e of events) counts.set(e.event, (counts.get(e.event) ?? 0) + 1);
        const promotions = await json<Promotions>(["promotions"]);
        return {
          summary: `${events.length} audit events, ${promotions.promotions.length} promotions`,
          detail: [
            [...counts].map(([k, v]) => `${k} ×${v}`).join(", "),
            ...promotions.promotions.map(
              (p) => `promotion ${p.run_id}: vllm_memory_util ${p.candidate.vllm_memory_util} (${p.path}), ${p.state}`,
            ),
          ].join("\n"),
        };
      },
    },
  ];

  const indent = (text: string) => text.replace(/^(?=.)/gm, "      ");
  out(`gpu-canary demo: the whole system on a simulated GPU host in ${dir}\n\n`);
  const report: { title: string; ok: boolean; summary: string; seconds: number }[] = [];
  let failed: string | null = null;
  let kept: KeptDemo | null = null;
  const began = Date.now();
  try {
    for (const [i, step] of steps.entries()) {
      const started = Date.now();
      out(`${i + 1}. ${step.title}${io.isTTY ? " …" : ""}\n`);
      try {
        const result = await step.run();
        const seconds = (Date.now() - started) / 1000;
        report.push({ title: step.title, ok: true, summary: result.summary, seconds });
        out(`   ✓ ${result.summary} (${seconds.toFixed(1)} s)\n${result.detail ? `${indent(result.detail)}\n` : ""}`);
      } catch (error) {
        const message = messageOf(error);
        report.push({ title: step.title, ok: false, summary: message, seconds: (Date.now() - started) / 1000 });
        failed = `step ${i + 1} (${step.title}): ${message}`;
        out(`   ✗ ${message}\n`);
        break;
      }
    }
  } finally {
    await site.cleanup();
    if (options.keep) kept = await keepDemo(dir, site.home, site.env);
    else await rm(dir, { recursive: true, force: true });
  }
  const seconds = (Date.now() - began) / 1000;
  if (options.json)
    io.stdout(
      `${JSON.stringify(
        {
          ok: failed === null,
          seconds,
          home: kept?.home ?? null,
          settings_file: kept?.settingsFile ?? null,
          env_file: kept?.envFile ?? null,
          steps: report,
        },
        null,
        2,
      )}\n`,
    );
  else if (failed === null)
    out(`\nThe demo finished in ${seconds.toFixed(1)} s; every simulated process is stopped.\n${kept ? keptText(kept) : ""}`);
  if (failed !== null) {
    throw new GpuCanaryError("DEMO_FAILED", `the demo failed at ${failed}`, {
      kind: "fault",
      hint: kept
        ? `the files are kept in ${kept.home}; \`source ${shellArg(kept.envFile)}\` points gpu-canary at them`
        : "run `gpu-canary demo --keep` to inspect the files it leaves",
    });
  }
  return 0;
}

/** Where a kept demo is, and how to point a shell's gpu-canary at it. */
function keptText(kept: KeptDemo): string {
  return [
    `Kept for inspection: ${kept.home}`,
    `  its settings:  ${kept.settingsFile}`,
    `  in a shell, point gpu-canary at it with:`,
    `    source ${shellArg(kept.envFile)}`,
    `    gpu-canary status; gpu-canary budget; gpu-canary audit tail`,
    `  (production and the canaries are stopped: the files answer, nothing serves)`,
    "",
  ].join("\n");
}
