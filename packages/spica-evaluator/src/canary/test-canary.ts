import { setTimeout as sleep } from "node:timers/promises";
import type { VllmClient } from "@gpu-canary/vllm-client";
import { type CanaryProcess, launchCanary, withRealVllmFlags } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import { type RunContext, canaryClient, canaryUrl } from "../context.ts";
import { loadJson } from "../result.ts";
import { type CanaryEvidence, judge, testUnderLoad } from "./canary-test.ts";
import type { Measured } from "../result.ts";
import { type LoadIntentKind, type LoadPlan, planLoad } from "./load-shape.ts";
import { type ProductionObserved, observeProduction } from "./production-observed.ts";

export interface TestVerdict {
  status: "passed" | "failed" | "inconclusive";
  reason: string;
  measured: Measured;
}

/**
 * The last line of the canary's output that says why it died (vLLM's out-of-memory texts), with
 * the flags vLLM's log misnames given their real names: the line becomes the run's reason.
 */
export function deathLine(canary: Pick<CanaryProcess, "tail">): string {
  const lines = canary
    .tail()
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const telling = lines.filter((l) => /error|memory|Traceback/i.test(l));
  return withRealVllmFlags(telling.at(-1) ?? lines.at(-1) ?? "no output").slice(0, 500);
}

/** The test's numbers; a quiesced run adds its downtime once production serves again. */
function measuredOf(path: Measured["path"], evidence: CanaryEvidence, observed: ProductionObserved): Measured {
  const { load, plan } = evidence;
  const t = load?.totals;
  const failures = load ? load.requests.filter((r) => r.failure !== null && r.failure.kind !== "stopped") : [];
  const errors = [
    ...evidence.errors,
    ...failures.slice(0, 5).map((r) => `request ${r.index + 1} (${r.kind}): ${r.failure?.message ?? ""}`),
    ...(evidence.death ? [`the canary exited: ${evidence.death}`] : []),
  ];
  return {
    path,
    ttftP50Ms: t?.ttftMs.p50 ?? null,
    ttftP95Ms: t?.ttftMs.p95 ?? null,
    itlP50Ms: t?.itlMs.p50 ?? null,
    itlP95Ms: t?.itlMs.p95 ?? null,
    e2eP50Ms: t?.e2eMs.p50 ?? null,
    samples: t?.completed ?? 0,
    errors,
    productionBaseline: observed.baseline,
    load: plan && {
      concurrency: plan.concurrency,
      promptTokens: plan.promptTokens,
      outputTokens: plan.outputTokens,
      extra: plan.extra.map((e) => ({ promptTokens: e.promptTokens, outputTokens: e.outputTokens })),
      why: plan.extra[0]?.why ?? null,
      basis: plan.basis,
      promptTokensSeenP50: t?.promptTokensSeenP50 ?? null,
      outputTokensSeen: t?.outputTokens ?? null,
      started: t?.started ?? 0,
      completed: t?.completed ?? 0,
      failed: t?.failed ?? 0,
      stopped: t?.stopped ?? 0,
      requestsPerSecond: t ? round1(t.requestsPerSecond) : null,
      outputTokensPerSecond: t ? round1(t.outputTokensPerSecond) : null,
      durationSeconds: load ? round1(load.durationMs / 1000) : null,
    },
    preemptions: evidence.preemptions,
    kvCacheUsagePeak: evidence.kvCacheUsagePeak,
    canaryServer: evidence.server,
    downtimeSeconds: null,
  };
}

const round1 = (n: number) => Math.round(n * 10) / 10;

/** Which vLLM takes the load: the canary's port, or production's own after an apply. */
export interface LoadedServer {
  client: VllmClient;
  baseUrl: string;
}

const canaryServer = (ctx: RunContext): LoadedServer => ({ client: canaryClient(ctx.config), baseUrl: canaryUrl(ctx.config) });

async function testCanary(
  ctx: RunContext,
  server: LoadedServer,
  canary: CanaryProcess | null,
  plan: () => Promise<LoadPlan>,
  deadline: number,
): Promise<CanaryEvidence> {
  const died = canary ? () => (canary.hasExited() ? deathLine(canary) : null) : undefined;
  const { config } = ctx;
  const evidence = await testUnderLoad(server.client, {
    baseUrl: server.baseUrl,
    ...(config.vllmApiKey ? { apiKey: config.vllmApiKey } : {}),
    plan,
    minRequests: config.canarySamples,
    deadline,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
    ...(died ? { died } : {}),
  });
  // A dying canary refuses connections before its exit is seen: give the exit a moment to tell why.
  const short =
    !evidence.load || evidence.metricsLost || evidence.load.totals.failed > 0 || evidence.load.totals.completed < config.canarySamples;
  if (canary && died && short && evidence.death === null) {
    await Promise.race([canary.exited, sleep(2000)]);
    evidence.death = died();
  }
  return evidence;
}

/** What the canary's load must reproduce, from the run's intent and the candidate's predicted KV cache. */
export interface LoadTarget {
  intentKind: LoadIntentKind | null;
  kvTokens: number | null;
}

/** The server's max_model_len: the setting, else what its /v1/models says (vLLM's default from the model). */
async function maxModelLenOf(ctx: RunContext, server: LoadedServer): Promise<number | null> {
  if (ctx.config.maxModelLen !== undefined) return ctx.config.maxModelLen;
  const models = await server.client.models(3000).catch(() => []);
  return models[0]?.maxModelLen ?? null;
}

/**
 * Test the canary under production's load within the timeout, audit what came back, and judge it
 * against production's baseline. A canary that died (vLLM's own out-of-memory exit) failed; one
 * that never answered in time is inconclusive — with the reason when the timeout is shorter than
 * production's own start.
 */
export async function testAndJudge(
  ctx: RunContext,
  test: {
    canary: CanaryProcess | null;
    path: Measured["path"];
    observed: ProductionObserved;
    runId: string;
    target: LoadTarget;
    /** default: the canary on KLR_CANARY_PORT */
    server?: LoadedServer;
    /**
     * requests the server is serving already (production's own traffic, when production itself is
     * verified): the load only tops them up to the planned concurrency, or it would test twice the traffic
     */
    alreadyInFlight?: () => Promise<number>;
  },
  productionStartSeconds: number | null = null,
): Promise<TestVerdict> {
  const { config } = ctx;
  const server = test.server ?? canaryServer(ctx);
  const deadline = Date.now() + config.canaryTimeoutSeconds * 1000;
  // Planned once the canary serves: its /v1/models says its max_model_len.
  const plan = async () => {
    const planned = planLoad({
      settings: config,
      production: test.observed.shape,
      intentKind: test.target.intentKind,
      kvTokens: test.target.kvTokens,
      maxModelLen: await maxModelLenOf(ctx, server),
    });
    const busy = test.alreadyInFlight ? Math.round(await test.alreadyInFlight()) : 0;
    if (busy <= 0) return planned;
    const concurrency = Math.max(1, planned.concurrency - busy);
    return {
      ...planned,
      concurrency,
      basis: `${planned.basis}; ${busy} of production's own requests already in flight, topped up by ${concurrency}`,
    };
  };
  const evidence = await testCanary(ctx, server, test.canary, plan, deadline);
  const measured = measuredOf(test.path, evidence, test.observed);
  await ctx.audit.append({
    event: "canary_tested",
    run_id: test.runId,
    path: test.path,
    samples: measured.samples,
    errors: measured.errors,
    died: evidence.death !== null,
    timed_out: evidence.timedOut,
    load: loadJson(measured.load),
    preemptions: evidence.preemptions,
    kv_cache_usage_peak: evidence.kvCacheUsagePeak,
    ttft_p95_ms: measured.ttftP95Ms,
    itl_p95_ms: measured.itlP95Ms,
  });
  const verdict = judge(evidence, test.observed.baseline, {
    samplesWanted: config.canarySamples,
    ttftP95Ms: config.canaryTtftP95Ms,
    maxSlowdown: config.canaryMaxSlowdown,
    maxPreemptions: config.canaryMaxPreemptions,
  });
  if (
    verdict.status === "inconclusive" &&
    evidence.timedOut &&
    productionStartSeconds !== null &&
    productionStartSeconds >= config.canaryTimeoutSeconds
  ) {
    const why = `; KLR_CANARY_TIMEOUT (${config.canaryTimeoutSeconds} s) is not above production's own start (${productionStartSeconds.toFixed(1)} s): a canary loading the same model needs at least as long — raise it, or test on a spare GPU`;
    return { ...verdict, reason: `${verdict.reason}${why}`, measured };
  }
  return { ...verdict, measured };
}

/** Production's latency and traffic from its own /metrics, read before anything stops it (no extra load on production). */
export function observeProductionOf(ctx: RunContext): Promise<ProductionObserved> {
  return observeProduction({ metrics: () => ctx.production.metrics(3000), vllmSeenPath: ctx.layout.vllmSeen, now: ctx.now() });
}

export function launch(
  ctx: Pick<RunContext, "config" | "env">,
  candidate: Candidate,
  gpuIndex: number,
  options: { held?: boolean } = {},
): CanaryProcess {
  const c = ctx.config;
  return launchCanary(
    {
      vllmCommand: c.vllmCommand,
      modelPath: c.modelPath,
      port: c.canaryPort,
      gpuMemoryUtilization: candidate.vllmMemoryUtil,
      gpuIndex,
      ...(c.maxModelLen !== undefined ? { maxModelLen: c.maxModelLen } : {}),
      ...(c.maxNumSeqs !== undefined ? { maxNumSeqs: c.maxNumSeqs } : {}),
      ...(c.maxNumBatchedTokens !== undefined ? { maxNumBatchedTokens: c.maxNumBatchedTokens } : {}),
      kvCacheDtype: c.kvCacheDtype,
      ...(c.vllmExtraArgs ? { extraArgs: c.vllmExtraArgs } : {}),
      // Production's engine settings (VLLM_USE_V1=0 on 0.8–0.10 is another engine): the canary runs as production does.
      env: { ...ctx.env, ...c.vllmExtraEnv },
    },
    options,
  );
}
