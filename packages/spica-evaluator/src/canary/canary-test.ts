import { setTimeout as sleep } from "node:timers/promises";
import { type LoadReport, percentile, runLoad } from "@gpu-canary/canary-load";
import { messageOf } from "@gpu-canary/errors";
import { type Sample, type VllmClient, histogramDelta, maxOf, sumOf } from "@gpu-canary/vllm-client";
import type { LoadPlan } from "./load-shape.ts";
import { LATENCY_HISTOGRAMS, type ProductionBaseline, type ServerLatency, latencyOf } from "./production-observed.ts";

/** What the canary showed: from its health and warm-up, the load's requests, and its own /metrics. */
export interface CanaryEvidence {
  /** health and warm-up problems, and why no load could be generated */
  errors: string[];
  /** why the canary died (its own last words), when it did: a failure, not a missing answer */
  death: string | null;
  /** the canary's timeout ran out before the test was done */
  timedOut: boolean;
  /** the load planned once the canary served; null when it never did */
  plan: LoadPlan | null;
  /** null: no load ran (the canary never served, or the load could not start) */
  load: LoadReport | null;
  /** vllm:num_preemptions_total after the load less before it; null where the canary does not export it */
  preemptions: number | null;
  /** the highest KV-cache usage (0–1) the canary's /metrics showed during the load */
  kvCacheUsagePeak: number | null;
  /** the load's latency as the canary's own histograms counted it: measured as production's baseline is */
  server: ServerLatency | null;
  /** the same, of the steady load alone: read as the intent's longer requests start (null without them) */
  serverBeforeExtras: ServerLatency | null;
  /** the canary's /metrics answered before the load and not after it: gone, or hung — no evidence to pass on */
  metricsLost: boolean;
}

export interface CanaryTestOptions {
  /** the canary, e.g. http://127.0.0.1:9011 */
  baseUrl: string;
  apiKey?: string;
  /** steady requests started at least, past the load's seconds when each outlasts them (KLR_CANARY_SAMPLES) */
  minRequests: number;
  /** the load, planned once the canary serves (the plan may ask it its max_model_len) */
  plan: () => Promise<LoadPlan>;
  /** the test must end by then (epoch ms): the canary's timeout */
  deadline: number;
  signal?: AbortSignal;
  onProgress?: (line: string) => void;
  /** why the canary died, once it did (its exit), to stop waiting early */
  died?: () => string | null;
  /** between two readings of the canary's /metrics during the load (default 250 ms) */
  pollMs?: number;
}

const PREEMPTIONS = "vllm:num_preemptions_total";
/** KV-cache usage, a fraction despite the name: vLLM ≥ 0.10's name first, then the older one. */
const KV_USAGE = ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"] as const;

/** Summed over engines and models; null when the counter is absent. */
export function preemptionsOf(samples: readonly Sample[]): number | null {
  return sumOf(samples, PREEMPTIONS);
}

export function kvUsageOf(samples: readonly Sample[]): number | null {
  for (const name of KV_USAGE) {
    const value = maxOf(samples, name);
    if (value !== null) return value;
  }
  return null;
}

/** Health, polled until the deadline or the canary's death, then one warm-up completion. False: the reason is in `out`. */
async function readyForLoad(client: VllmClient, options: CanaryTestOptions, out: CanaryEvidence): Promise<boolean> {
  const left = () => options.deadline - Date.now();
  for (;;) {
    options.signal?.throwIfAborted();
    out.death = options.died?.() ?? null;
    if (out.death) return false;
    if (left() <= 0) {
      out.errors.push("the canary was not healthy before its timeout");
      out.timedOut = true;
      return false;
    }
    try {
      await client.waitUntilHealthy({ deadlineMs: Math.min(left(), 500), ...(options.signal ? { signal: options.signal } : {}) });
      break;
    } catch (error) {
      options.signal?.throwIfAborted();
      if (error instanceof Error && "code" in error && error.code === "VLLM_ENGINE_DEAD") {
        out.errors.push(error.message);
        return false;
      }
    }
  }
  options.onProgress?.("canary healthy; warm-up completion");
  try {
    await client.completion({
      prompt: "Hello",
      maxTokens: 16,
      timeoutMs: Math.max(1, Math.min(left(), 20_000)),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return true;
  } catch (error) {
    options.signal?.throwIfAborted();
    out.errors.push(`warm-up: ${messageOf(error)}`);
    out.death = options.died?.() ?? null;
    return false;
  }
}

/**
 * The evidence (invariant 2): health, a warm-up completion, then the load shaped like
 * production's (load-shape.ts) while the canary's /metrics are read — before, every poll, after.
 * Health alone proves nothing; a canary that dies mid-load stops the load at once.
 */
export async function testUnderLoad(client: VllmClient, options: CanaryTestOptions): Promise<CanaryEvidence> {
  const out: CanaryEvidence = {
    errors: [],
    death: null,
    timedOut: false,
    plan: null,
    load: null,
    preemptions: null,
    kvCacheUsagePeak: null,
    server: null,
    metricsLost: false,
    serverBeforeExtras: null,
  };
  if (!(await readyForLoad(client, options, out))) return out;
  const plan = await options.plan();
  out.plan = plan;
  const metrics = () => client.metrics(1000).catch(() => null);
  const before = await metrics();
  let peak = before ? kvUsageOf(before) : null;
  const extra = plan.extra.length > 0 ? `, with ${plan.extra[0]?.why ?? `${plan.extra.length} more`}` : "";
  options.onProgress?.(
    `load: ${plan.concurrency} requests in flight of ${plan.promptTokens} prompt + ${plan.outputTokens} output tokens for ${plan.durationSeconds} s${extra}`,
  );
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  let loading = true;
  // the intent's longer requests delay every request beside them: the steady load's latency is read before they start
  const steadyLoad: { metrics: Promise<Sample[] | null> | null } = { metrics: null };
  const poll = (async () => {
    while (loading) {
      const death = options.died?.() ?? null;
      if (death) {
        out.death = death;
        stop.abort(new Error(`the canary exited: ${death}`));
        return;
      }
      const now = await metrics();
      const usage = now ? kvUsageOf(now) : null;
      if (usage !== null) peak = Math.max(peak ?? 0, usage);
      await sleep(options.pollMs ?? 250);
    }
  })();
  try {
    const secondsLeft = (options.deadline - Date.now()) / 1000;
    if (secondsLeft < plan.durationSeconds) {
      out.errors.push(
        `only ${Math.max(0, secondsLeft).toFixed(1)} s of the canary's timeout were left for a ${plan.durationSeconds} s load (KLR_CANARY_TIMEOUT covers the start, the warm-up and KLR_CANARY_LOAD_SECONDS)`,
      );
      out.timedOut = true;
      return out;
    }
    out.load = await runLoad({
      baseUrl: options.baseUrl,
      ...(options.apiKey ? { apiKey: options.apiKey } : {}),
      concurrency: plan.concurrency,
      promptTokens: plan.promptTokens,
      outputTokens: plan.outputTokens,
      durationSeconds: plan.durationSeconds,
      rampUpSeconds: plan.rampUpSeconds,
      minRequests: options.minRequests,
      deadlineSeconds: secondsLeft,
      extra: plan.extra.map((e) => ({ promptTokens: e.promptTokens, outputTokens: e.outputTokens })),
      setupTimeoutMs: Math.max(1, Math.min(30_000, Math.floor(secondsLeft * 1000))),
      signal,
      onExtrasStarting: () => {
        steadyLoad.metrics = metrics();
      },
    });
    out.timedOut = out.load.stoppedBy === "deadline";
  } catch (error) {
    options.signal?.throwIfAborted();
    if (!out.death) out.errors.push(`the load could not start: ${messageOf(error)}`);
  } finally {
    loading = false;
    await poll;
  }
  options.signal?.throwIfAborted();
  const after = await metrics();
  if (before && !after) {
    out.metricsLost = true;
    out.errors.push("the canary's /metrics answered before the load and not after it");
  }
  const usage = after ? kvUsageOf(after) : null;
  if (usage !== null) peak = Math.max(peak ?? 0, usage);
  out.kvCacheUsagePeak = peak;
  const [b, a] = [before && preemptionsOf(before), after && preemptionsOf(after)];
  out.preemptions = a !== null && b !== null ? Math.max(0, a - b) : null;
  const latencyOver = (until: Sample[] | null) =>
    before && until ? latencyOf(LATENCY_HISTOGRAMS.flatMap((name) => histogramDelta(before, until, name))) : null;
  out.server = latencyOver(after);
  out.serverBeforeExtras = latencyOver(steadyLoad.metrics && (await steadyLoad.metrics));
  out.death ??= options.died?.() ?? null;
  if (out.load) {
    const t = out.load.totals;
    options.onProgress?.(
      `load done: ${t.completed} of ${t.started} requests completed, ${t.outputTokensPerSecond.toFixed(0)} output tokens/s, ${out.preemptions ?? "?"} preemptions`,
    );
  }
  return out;
}

export interface Verdict {
  status: "passed" | "failed" | "inconclusive";
  reason: string;
}

export interface VerdictLimits {
  /** completed load requests needed (KLR_CANARY_SAMPLES) */
  samplesWanted: number;
  ttftP95Ms: number;
  maxSlowdown: number;
  maxPreemptions: number;
}

const pct = (fraction: number) => `${(fraction * 100).toFixed(fraction > 0 && fraction < 0.1 ? 1 : 0)} %`;
const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
const msText = (value: number) => `${value.toFixed(value < 10 ? 1 : 0)} ms`;
const fmt = (value: number | null) => (value === null ? "?" : msText(value));

/** The first failure of the load's requests that vLLM gave (or the stream showed), for the reason. */
function firstFailure(load: LoadReport): string {
  const failed = load.requests.find((r) => r.failure !== null && r.failure.kind !== "stopped");
  if (!failed?.failure) return "";
  const f = failed.failure;
  return `: ${f.kind === "http" ? `HTTP ${f.status} ` : ""}${f.message}`.slice(0, 300);
}

/**
 * Judge the evidence (docs/architecture.md, "The canary's test under load"): passed only with no
 * death, no request error, preemptions within the limit, TTFT p95 under the absolute limit and
 * TTFT and inter-token p95 within the slowdown of production's own (with an intent's longer
 * requests: those of the steady load before them). A load that could not run, a canary that
 * does not count its preemptions, or too few completed requests, is inconclusive. The reason
 * names the deciding number.
 */
export function judge(evidence: CanaryEvidence, baseline: ProductionBaseline | null, limits: VerdictLimits): Verdict {
  const { load } = evidence;
  if (evidence.death !== null) {
    const under = load || evidence.preemptions !== null ? " under load" : "";
    return { status: "failed", reason: `the canary exited${under}: ${evidence.death}` };
  }
  if (!load) return { status: "inconclusive", reason: evidence.errors.slice(-2).join("; ") || "no load was generated" };
  // Preemptions and KV usage unread: nothing says the canary held the load (a canary gone since counts here too).
  if (evidence.metricsLost)
    return {
      status: "inconclusive",
      reason: "the canary's /metrics answered before the load and not after it: its preemptions are unknown",
    };
  // A canary that does not count its preemptions cannot show it held the load without them.
  if (evidence.preemptions === null)
    return {
      status: "inconclusive",
      reason: "the canary's /metrics have no vllm:num_preemptions_total: whether its KV cache held the load is unknown",
    };
  const t = load.totals;
  const shape = `${load.asked.concurrency} in flight of ${load.asked.promptTokens} + ${load.asked.outputTokens} tokens${
    load.asked.extra.length > 0 ? ` and ${load.asked.extra.length} more` : ""
  }`;
  const peak = evidence.kvCacheUsagePeak === null ? "" : `; KV-cache usage peaked at ${pct(evidence.kvCacheUsagePeak)}`;
  if (evidence.preemptions > limits.maxPreemptions) {
    return {
      status: "failed",
      reason: `${evidence.preemptions} preemptions under the load (${shape}), above ${limits.maxPreemptions} (KLR_CANARY_MAX_PREEMPTIONS): its KV cache cannot hold production's requests${peak}`,
    };
  }
  if (t.failed > 0) {
    return { status: "failed", reason: `${t.failed} of ${t.started} load requests failed (${shape})${firstFailure(load)}` };
  }
  if (t.completed < limits.samplesWanted) {
    const stopped =
      t.stopped > 0 ? `, ${t.stopped} stopped at the canary's timeout (raise KLR_CANARY_TIMEOUT or lower KLR_CANARY_LOAD_SECONDS)` : "";
    return {
      status: "inconclusive",
      reason: `only ${t.completed} load requests completed, KLR_CANARY_SAMPLES wants ${limits.samplesWanted}${stopped}`,
    };
  }
  const ttftP95 = t.ttftMs.p95 ?? Infinity;
  const itlP95 = t.itlMs.p95;
  const latencies = `TTFT p95 ${msText(ttftP95)}, inter-token p95 ${itlP95 === null ? "n/a" : msText(itlP95)}`;
  const tail = `${evidence.preemptions} preemptions${peak}, ${t.outputTokensPerSecond.toFixed(0)} output tokens/s`;
  const done = `${plural(t.completed, "request")} under the load (${shape}) in ${(load.durationMs / 1000).toFixed(1)} s`;
  // Production's baseline is vLLM's own histograms (server side): the canary's are compared with it, like with like.
  // A histogram's p95 is only known to its bucket: slower only when even the bucket's lower bound is past the limit
  // (vLLM's TTFT buckets are 20 ms apart near 40 ms; a difference inside one is noise, not a slowdown).
  const slower = (what: string, canary: number | null, floor: number | null, production: number | null) =>
    canary !== null && floor !== null && production !== null && production > 0 && floor > production * limits.maxSlowdown
      ? `${what} p95 ${msText(canary)} (at least ${msText(floor)}) is ${(canary / production).toFixed(2)}× production's ${msText(production)} (vLLM's histograms of each), above ${limits.maxSlowdown}× (KLR_CANARY_MAX_SLOWDOWN)`
      : null;
  const comparable = baseline !== null && baseline.requests >= MIN_BASELINE_REQUESTS ? baseline : null;
  const slowerThanProduction = (server: ServerLatency | null) =>
    comparable && server
      ? (slower("TTFT", server.ttftP95Ms, server.ttftP95FloorMs, comparable.ttftP95Ms) ??
        slower("inter-token latency", server.itlP95Ms, server.itlP95FloorMs, comparable.itlP95Ms))
      : null;
  const extras = load.requests.filter((r) => r.kind === "extra");
  if (load.asked.extra.length > 0) {
    // The intent's requests prove memory only if they ran to the end.
    const unfinished = load.asked.extra.length - extras.filter((r) => r.failure === null).length;
    if (unfinished > 0)
      return {
        status: "inconclusive",
        reason: `${unfinished} of the intent's ${load.asked.extra.length} longer requests did not finish before the canary's timeout (raise KLR_CANARY_TIMEOUT)`,
      };
    // They are longer than production's, and their prefill delays every request beside them: latency is judged
    // on the steady requests that started before them (the ramp), against production's as the canary's histograms
    // counted them when the longer requests started.
    const firstExtra = Math.min(...extras.map((r) => r.startedMs));
    const before = load.requests.filter((r) => r.kind === "steady" && r.startedMs < firstExtra && r.failure === null && r.ttftMs !== null);
    const clean = percentile(
      before.map((r) => r.ttftMs ?? 0),
      95,
    );
    if (clean !== null && clean > limits.ttftP95Ms)
      return {
        status: "failed",
        reason: `TTFT p95 ${msText(clean)} of the ${before.length} requests before the intent's longer ones is above the limit ${limits.ttftP95Ms} ms (KLR_CANARY_TTFT_P95_MS)${peak}`,
      };
    // A p95 of a handful is their slowest: too few before them (a short ramp) say nothing against production.
    const s = evidence.serverBeforeExtras;
    const enoughBefore = s !== null && s.requests >= MIN_BASELINE_REQUESTS ? s : null;
    const slowerBefore = slowerThanProduction(enoughBefore);
    if (slowerBefore)
      return { status: "failed", reason: `${slowerBefore} under the steady load before the intent's longer requests (${shape})${peak}` };
    const cleanText = clean === null ? "none started before them" : `TTFT p95 ${msText(clean)} of the ${before.length} before them`;
    const comparedBefore = !comparable
      ? ""
      : enoughBefore
        ? ` (by vLLM's own histograms then: canary ${fmt(enoughBefore.ttftP95Ms)}, production ${fmt(comparable.ttftP95Ms)})`
        : s
          ? ` (not compared with production: vLLM's histograms counted ${plural(s.requests, "request")} before them, ${MIN_BASELINE_REQUESTS} needed)`
          : "";
    return {
      status: "passed",
      reason: `${done}: ${tail}; ${cleanText}${comparedBefore}; beside the intent's longer requests ${latencies} (reported, not judged)`,
    };
  }
  if (ttftP95 > limits.ttftP95Ms) {
    return {
      status: "failed",
      reason: `TTFT p95 ${msText(ttftP95)} under the load (${shape}) is above the limit ${limits.ttftP95Ms} ms (KLR_CANARY_TTFT_P95_MS)${peak}`,
    };
  }
  const server = evidence.server;
  const why = slowerThanProduction(server);
  if (why) return { status: "failed", reason: `${why} under the load (${shape})${peak}` };
  const against =
    baseline === null
      ? "; not compared with production: its /metrics did not answer, or counted no request"
      : baseline.requests < MIN_BASELINE_REQUESTS
        ? `; not compared with production: its histograms counted ${plural(baseline.requests, "request")} since it started (${MIN_BASELINE_REQUESTS} needed)`
        : server === null
          ? "; not compared with production: the canary's /metrics gave no latency histograms"
          : ` (TTFT p95 by vLLM's own histograms: canary ${fmt(server.ttftP95Ms)}, production ${fmt(baseline.ttftP95Ms)})`;
  const [compared, note] = against.startsWith(";") ? ["", against] : [against, ""];
  return { status: "passed", reason: `${done}: ${latencies}${compared}, ${tail}${note}` };
}

/** Fewer requests in production's histograms say too little of its latency to judge a canary by. */
export const MIN_BASELINE_REQUESTS = 20;
