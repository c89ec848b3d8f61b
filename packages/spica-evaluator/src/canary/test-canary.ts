import { setTimeout as sleep } from "node:timers/promises";
import { percentile } from "@gpu-canary/vllm-client";
import { type CanaryProcess, launchCanary, withRealVllmFlags } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import { type RunContext, canaryClient } from "../context.ts";
import type { Measured } from "../result.ts";
import { type LatencySamples, judge, measureBaseline, timedCompletions } from "./canary-test.ts";
import type { CanaryPath } from "./gates.ts";

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
function measuredOf(path: CanaryPath, samples: LatencySamples, baseline: Measured["productionBaseline"]): Measured {
  const errors = samples.death ? [...samples.errors, `the canary exited: ${samples.death}`] : samples.errors;
  return {
    path,
    ttftP50Ms: percentile(samples.ttftMs, 50),
    ttftP95Ms: percentile(samples.ttftMs, 95),
    itlP50Ms: percentile(samples.itlMs, 50),
    itlP95Ms: percentile(samples.itlMs, 95),
    e2eP50Ms: percentile(samples.e2eMs, 50),
    samples: samples.e2eMs.length,
    errors,
    productionBaseline: baseline,
    downtimeSeconds: null,
  };
}

async function testCanary(ctx: RunContext, canary: CanaryProcess | null, deadline: number): Promise<LatencySamples> {
  const died = canary ? () => (canary.hasExited() ? deathLine(canary) : null) : undefined;
  const samples = await timedCompletions(canaryClient(ctx.config), {
    samples: ctx.config.canarySamples,
    deadline,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
    ...(died ? { died } : {}),
  });
  // A dying canary refuses connections before its exit is seen: give the exit a moment to tell why.
  if (canary && died && samples.e2eMs.length < ctx.config.canarySamples && samples.death === null) {
    await Promise.race([canary.exited, sleep(2000)]);
    samples.death = died();
  }
  return samples;
}

/**
 * Test the canary within the timeout, audit what came back, and judge it against production's
 * baseline. A canary that died (vLLM's own out-of-memory exit) failed; one that never answered
 * in time is inconclusive — with the reason when the timeout is shorter than production's own start.
 */
export async function testAndJudge(
  ctx: RunContext,
  test: { canary: CanaryProcess | null; path: CanaryPath; baseline: Measured["productionBaseline"]; runId: string },
  productionStartSeconds: number | null = null,
): Promise<TestVerdict> {
  const { config } = ctx;
  const samples = await testCanary(ctx, test.canary, Date.now() + config.canaryTimeoutSeconds * 1000);
  const measured = measuredOf(test.path, samples, test.baseline);
  await ctx.audit.append({
    event: "canary_tested",
    run_id: test.runId,
    path: test.path,
    samples: samples.e2eMs.length,
    errors: measured.errors,
    died: samples.death !== null,
    timed_out: samples.timedOut,
  });
  const verdict = judge(samples, test.baseline, {
    samplesWanted: config.canarySamples,
    ttftP95Ms: config.canaryTtftP95Ms,
    maxSlowdown: config.canaryMaxSlowdown,
  });
  if (samples.death !== null && verdict.status === "inconclusive")
    return { status: "failed", reason: `the canary exited: ${samples.death}`, measured };
  if (samples.timedOut && productionStartSeconds !== null && productionStartSeconds >= config.canaryTimeoutSeconds) {
    const why = `; KLR_CANARY_TIMEOUT (${config.canaryTimeoutSeconds} s) is not above production's own start (${productionStartSeconds.toFixed(1)} s): a canary loading the same model needs at least as long — raise it, or test on a spare GPU`;
    return { ...verdict, reason: `${verdict.reason}${why}`, measured };
  }
  return { ...verdict, measured };
}

const BASELINE_SAMPLES = 3;

/** Production's own latency now, for the relative limit (null when it does not answer). */
export function productionBaseline(ctx: RunContext): Promise<Measured["productionBaseline"]> {
  // Named by what production serves (--served-model-name may differ from the model's path).
  return measureBaseline(ctx.production, BASELINE_SAMPLES);
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
