import { setTimeout as sleep } from "node:timers/promises";
import { GpuCanaryError, InterruptedError, messageOf } from "@gpu-canary/errors";
import { CrashedRunError, GpuLockHeldError, type GpuLockHandle, awaitsRecovery } from "@gpu-canary/gpu-lock";
import { percentile } from "@gpu-canary/vllm-client";
import {
  type CanaryProcess,
  type Watchdog,
  armWatchdog,
  launchCanary,
  portState,
  restoreProduction,
  switchWhisper,
  whisperConfigured,
} from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import { type RunContext, canaryClient, productionServiceOf, restorePlanOf } from "../context.ts";
import { rememberVllmSeen } from "../predictive/vllm-seen.ts";
import { armFilePath, recoverIfCrashed } from "../recover.ts";
import type { Measured } from "../result.ts";
import { type LatencySamples, judge, measureBaseline, timedCompletions } from "./canary-test.ts";
import { type CanaryPath, type Refusal, checkGates } from "./gates.ts";
import { type WorstCase, watchdogDeadlineSeconds, worstCase } from "./worst-case.ts";

export interface CanaryOutcome {
  status: "passed" | "failed" | "inconclusive" | "refused" | "error";
  reason: string;
  gate: string | null;
  measured: Measured | null;
  /** Whisper ran at the candidate's size during the test */
  whisperVerified: boolean;
}

const BASELINE_SAMPLES = 3;

/** Why the run was aborted, typed: a signal's InterruptedError (exit 128 + n), or the lock's loss. */
function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  if (typeof reason === "string" && reason.startsWith("SIG")) return new InterruptedError(reason as NodeJS.Signals, "the canary run");
  return new Error(`the canary run was aborted: ${messageOf(reason)}`);
}

/** The last line of the canary's output that says why it died (vLLM's out-of-memory texts). */
function deathLine(canary: CanaryProcess): string {
  const lines = canary
    .tail()
    .split("\n")
    .map((l) => l.trim())
    .filter(Boolean);
  const telling = lines.filter((l) => /error|memory|Traceback/i.test(l));
  return (telling.at(-1) ?? lines.at(-1) ?? "no output").slice(0, 500);
}

/** The test's numbers; a quiesced run adds its downtime once production serves again. */
function measuredOf(path: CanaryPath, samples: LatencySamples, baseline: Measured["productionBaseline"]): Measured {
  return {
    path,
    ttftP50Ms: percentile(samples.ttftMs, 50),
    ttftP95Ms: percentile(samples.ttftMs, 95),
    itlP50Ms: percentile(samples.itlMs, 50),
    itlP95Ms: percentile(samples.itlMs, 95),
    e2eP50Ms: percentile(samples.e2eMs, 50),
    samples: samples.e2eMs.length,
    errors: samples.errors,
    productionBaseline: baseline,
    downtimeSeconds: null,
  };
}

/** Which path: a vLLM already on the canary port is tested as it is; else the spare GPU when allowed; else quiesced. */
async function choosePath(ctx: RunContext, candidate: Candidate): Promise<{ path: CanaryPath } | { refusal: Refusal }> {
  const port = await portState(ctx.config.canaryPort);
  if (!port.free) {
    const client = canaryClient(ctx.config);
    const isVllm = await client.version(2000).then(
      () => true,
      () => false,
    );
    if (isVllm) {
      const mismatch = await attachedMismatch(ctx, candidate);
      return mismatch ? { refusal: { gate: "canary_port", reason: mismatch } } : { path: "attached" };
    }
    return {
      refusal: { gate: "canary_port", reason: `${port.description}, which is not a vLLM; the canary could not bind it (KLR_CANARY_PORT)` },
    };
  }
  return { path: ctx.config.allowSpareGpu ? "spare" : "quiesced" };
}

/** An attached canary must be shown to run the candidate's settings before its numbers mean anything. */
async function attachedMismatch(ctx: RunContext, candidate: Candidate): Promise<string | null> {
  const client = canaryClient(ctx.config);
  const [cache, models] = await Promise.all([client.cacheConfig(3000).catch(() => null), client.models(3000).catch(() => null)]);
  const util = cache?.gpu_memory_utilization;
  if (util === undefined)
    return `the vLLM on port ${ctx.config.canaryPort} does not say its gpu_memory_utilization (no vllm:cache_config_info metric)`;
  if (Math.abs(Number(util) - candidate.vllmMemoryUtil) > 1e-6) {
    return `the vLLM on port ${ctx.config.canaryPort} runs gpu_memory_utilization ${util}, not the candidate's ${candidate.vllmMemoryUtil}`;
  }
  const model = ctx.config.modelPath;
  const served = models ?? [];
  if (!served.some((m) => m.id === model || m.root === model)) {
    return `the vLLM on port ${ctx.config.canaryPort} serves ${served.map((m) => m.id).join(", ") || "no model"}, not ${model} (KLR_MODEL_PATH)`;
  }
  return null;
}

/**
 * The canary run of DESIGN.md: quick gates, lock, the gates again, then the path's steps, with
 * production restored on every way out once it was quiesced.
 */
export async function runCanary(ctx: RunContext, candidate: Candidate, run: { runId: string; subsystem: string }): Promise<CanaryOutcome> {
  const { config, audit } = ctx;
  const progress = (line: string) => ctx.onProgress?.(line);
  const refused = async (refusal: Refusal): Promise<CanaryOutcome> => {
    await audit.append({ event: "gate_refused", run_id: run.runId, gate: refusal.gate, reason: refusal.reason });
    return {
      status: "refused",
      reason: `refused by the ${refusal.gate} gate: ${refusal.reason}`,
      gate: refusal.gate,
      measured: null,
      whisperVerified: false,
    };
  };

  // A crashed run's lock is recovered first (as `recover` does), never stolen.
  const recovered = await recoverIfCrashed(ctx);
  if (recovered) progress(recovered.detail);

  const chosen = await choosePath(ctx, candidate);
  if ("refusal" in chosen) return refused(chosen.refusal);
  const path = chosen.path;
  const worst = await worstCase(audit, config, ctx.now());
  const quick = await checkGates(ctx, { subsystem: run.subsystem, path, worst });
  if (quick.refusal) return refused(quick.refusal);

  let handle: GpuLockHandle;
  try {
    handle = await ctx.lock.acquire({ purpose: `canary (${path}) ${JSON.stringify(candidate)}`, runId: run.runId, waitSeconds: 0 });
  } catch (error) {
    if (error instanceof GpuLockHeldError) return refused({ gate: "lock", reason: error.message });
    if (error instanceof CrashedRunError) return refused({ gate: "crashed_run", reason: error.message });
    throw error;
  }
  const lost = new AbortController();
  const stopRenewal = handle.startRenewal((error) => lost.abort(error));
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, lost.signal]) : lost.signal;
  try {
    const under = await checkGates(ctx, { subsystem: run.subsystem, path, worst, underLock: true });
    if (under.refusal) return await refused(under.refusal);
    const admitted = await ctx.rate.admit(run.subsystem, run.runId);
    if (!admitted.allowed) return await refused({ gate: "rate_limit", reason: admitted.reason });
    await handle.journal({ phase: "admitted" });
    progress(`gates passed (${path}); ${admitted.reason}`);
    const inner = { ...ctx, signal };
    const outcome =
      path === "attached"
        ? await attached(inner, run.runId)
        : path === "spare"
          ? await spare(inner, candidate, run.runId)
          : await quiesced(inner, candidate, run.runId, handle, under.night, worst);
    // A test cut short by a signal or by the lock's loss is no verdict on the candidate.
    if (signal.aborted) throw abortError(signal);
    return outcome;
  } finally {
    stopRenewal();
    if (awaitsRecovery(handle.record())) {
      // Production was quiesced and the run did not finish (not restored, or not charged): the
      // journal stays in the lock for `gpu-canary recover`, which takes it once its lease lapses.
      progress("the lock keeps this run's journal for `gpu-canary recover`");
    } else {
      await handle.release();
    }
  }
}

async function testCanary(ctx: RunContext, canary: CanaryProcess | null, deadline: number): Promise<LatencySamples> {
  const died = canary ? () => (canary.hasExited() ? `the canary exited: ${deathLine(canary)}` : null) : undefined;
  const samples = await timedCompletions(canaryClient(ctx.config), {
    samples: ctx.config.canarySamples,
    deadline,
    model: ctx.config.modelPath,
    ...(ctx.signal ? { signal: ctx.signal } : {}),
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
    ...(died ? { died } : {}),
  });
  // A dying canary refuses connections before its exit is seen: give the exit a moment to tell why.
  if (canary && samples.e2eMs.length < ctx.config.canarySamples && !samples.errors.some((e) => e.startsWith("the canary exited"))) {
    await Promise.race([canary.exited, sleep(2000)]);
    const why = died?.();
    if (why) samples.errors.push(why);
  }
  return samples;
}

/** Test the canary within the timeout, audit what came back, and judge it against production's baseline. */
async function testAndJudge(
  ctx: RunContext,
  canary: CanaryProcess | null,
  path: CanaryPath,
  baseline: Measured["productionBaseline"],
  runId: string,
) {
  const samples = await testCanary(ctx, canary, Date.now() + ctx.config.canaryTimeoutSeconds * 1000);
  await ctx.audit.append({ event: "canary_tested", run_id: runId, path, samples: samples.e2eMs.length, errors: samples.errors });
  const verdict = judge(samples, baseline, {
    samplesWanted: ctx.config.canarySamples,
    ttftP95Ms: ctx.config.canaryTtftP95Ms,
    maxSlowdown: ctx.config.canaryMaxSlowdown,
  });
  // A canary that died (vLLM's own out-of-memory exit) failed; one that never answered is inconclusive.
  const died = samples.errors.find((e) => e.startsWith("the canary exited"));
  const status = died && verdict.status === "inconclusive" ? ("failed" as const) : verdict.status;
  return { status, reason: died && status === "failed" ? died : verdict.reason, measured: measuredOf(path, samples, baseline) };
}

function launch(ctx: RunContext, candidate: Candidate, gpuIndex: number, options: { held?: boolean } = {}): CanaryProcess {
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
      env: ctx.env,
    },
    options,
  );
}

async function stopCanary(ctx: RunContext, canary: CanaryProcess, runId: string): Promise<void> {
  const started = Date.now();
  await canary.stop(5000);
  await ctx.audit.append({ event: "canary_stopped", run_id: runId, seconds: (Date.now() - started) / 1000 });
}

async function attached(ctx: RunContext, runId: string): Promise<CanaryOutcome> {
  ctx.onProgress?.(`testing the vLLM already serving on port ${ctx.config.canaryPort}`);
  const baseline = await measureBaseline(ctx.production, BASELINE_SAMPLES, ctx.config.modelPath);
  const verdict = await testAndJudge(ctx, null, "attached", baseline, runId);
  return { ...verdict, gate: null, whisperVerified: false };
}

async function spare(ctx: RunContext, candidate: Candidate, runId: string): Promise<CanaryOutcome> {
  const baseline = await measureBaseline(ctx.production, BASELINE_SAMPLES, ctx.config.modelPath);
  ctx.onProgress?.(`starting the canary on spare GPU ${ctx.config.spareGpuId}, production untouched`);
  const canary = launch(ctx, candidate, ctx.config.spareGpuId);
  await ctx.audit.append({
    event: "canary_started",
    run_id: runId,
    port: ctx.config.canaryPort,
    gpu_index: ctx.config.spareGpuId,
    path: "spare",
  });
  try {
    const verdict = await testAndJudge(ctx, canary, "spare", baseline, runId);
    return { ...verdict, gate: null, whisperVerified: false };
  } finally {
    await stopCanary(ctx, canary, runId);
  }
}

/**
 * The quiesced path: watchdog, quiesce, (Whisper), canary, (Whisper back), restore, charge.
 * Once the quiesce is issued, every way out goes through the restore in `finally`.
 */
async function quiesced(
  ctx: RunContext,
  candidate: Candidate,
  runId: string,
  handle: GpuLockHandle,
  night: string,
  worst: WorstCase,
): Promise<CanaryOutcome> {
  const { config, audit } = ctx;
  const progress = (line: string) => ctx.onProgress?.(line);
  const service = productionServiceOf(ctx);
  const plan = restorePlanOf(config, ctx.env);
  const whisperDeps = {
    ...(config.whisperStopCommand ? { stopCommand: config.whisperStopCommand } : {}),
    ...(config.whisperStartCommand ? { startCommand: config.whisperStartCommand } : {}),
    processMatch: config.whisperProcess,
    gpuIndex: config.productionGpuId,
    probe: ctx.probe,
    env: ctx.env,
  };
  const switchesWhisper = whisperConfigured(whisperDeps) && candidate.whisperModelSize !== config.whisperSize;

  const baseline = await measureBaseline(ctx.production, BASELINE_SAMPLES, config.modelPath);
  const budgetLeft = (await ctx.budget.status(night)).secondsLeft;
  const watchdog: Watchdog = await armWatchdog({
    runId,
    deadline: new Date(Date.now() + watchdogDeadlineSeconds(worst, budgetLeft) * 1000),
    restore: plan,
    armFile: armFilePath(ctx.layout.locksDir),
    reportPath: ctx.layout.watchdogReport,
    ...(ctx.useSystemdRun !== undefined ? { useSystemdRun: ctx.useSystemdRun } : {}),
  });
  const stoppedAt = new Date();
  try {
    // A signal that came while the run took the lock and armed the watchdog stops it here, with
    // nothing stopped: Ctrl-C must never turn into a production restart.
    if (ctx.signal?.aborted) throw abortError(ctx.signal);
    await handle.checkFence();
    // Journaled before the quiesce is issued: a crash from here on is found by recovery.
    await handle.journal({ phase: "quiescing", quiesce: config.quiesce, production_stopped_at: stoppedAt.toISOString() });
    // A signal during that write: still nothing stopped, so the journal is taken back. From here to
    // the stop below nothing awaits, so no signal can come between.
    if (ctx.signal?.aborted) {
      await handle.journal({ phase: "admitted", quiesce: undefined, production_stopped_at: undefined });
      throw abortError(ctx.signal);
    }
  } catch (error) {
    // Nothing was stopped: a watchdog left armed would fire at its deadline for nothing.
    await watchdog.disarm();
    throw error;
  }
  progress(`quiescing production (${config.quiesce}) — the downtime starts now`);

  let canary: CanaryProcess | null = null;
  let whisperAt = config.whisperSize as string;
  let outcome: CanaryOutcome | null = null;
  let failure: unknown = null;
  try {
    if (config.quiesce === "sleep") {
      await ctx.production.sleep(1, 30_000);
      // What sleep keeps on the card, for the next run's predictive check.
      const residue = (await service.gpuHolders().catch(() => [])).reduce((sum, h) => sum + (h.usedMemoryMib ?? 0), 0);
      if (residue > 0)
        await rememberVllmSeen(ctx.layout.vllmSeen, { seen_at: new Date().toISOString(), sleep_residue_mib: residue }).catch(
          () => undefined,
        );
    } else await service.stop(30_000);
    await audit.append({
      event: "production_stopped",
      run_id: runId,
      method: config.quiesce,
      seconds: (Date.now() - stoppedAt.getTime()) / 1000,
    });
    ctx.signal?.throwIfAborted();
    if (switchesWhisper) {
      progress(`Whisper ${config.whisperSize} → ${candidate.whisperModelSize}`);
      await switchWhisper(whisperDeps, config.whisperSize, candidate.whisperModelSize, 30_000);
      whisperAt = candidate.whisperModelSize;
    }
    await handle.checkFence();
    progress(`starting the canary on GPU ${config.productionGpuId} port ${config.canaryPort}`);
    // Held until the watchdog knows its group: a run killed at any instant leaves no canary the
    // watchdog cannot stop (one left behind would keep the GPU and production's restart would fail).
    canary = launch(ctx, candidate, config.productionGpuId, { held: true });
    await watchdog.setCanary(canary.pgid);
    canary.release();
    await audit.append({
      event: "canary_started",
      run_id: runId,
      port: config.canaryPort,
      gpu_index: config.productionGpuId,
      path: "quiesced",
    });
    const verdict = await testAndJudge(ctx, canary, "quiesced", baseline, runId);
    outcome = { ...verdict, gate: null, whisperVerified: switchesWhisper || candidate.whisperModelSize === config.whisperSize };
  } catch (error) {
    failure = error;
  }

  // The way back, whatever happened above: no signal may cut it short.
  const steps: string[] = [];
  if (canary) {
    try {
      await stopCanary(ctx, canary, runId);
    } catch (error) {
      steps.push(messageOf(error));
    }
  }
  await watchdog.setCanary(null).catch(() => undefined);
  if (whisperAt !== config.whisperSize) {
    try {
      await switchWhisper(whisperDeps, whisperAt, config.whisperSize, 30_000);
    } catch (error) {
      steps.push(`Whisper could not be switched back to ${config.whisperSize}: ${messageOf(error)}`);
    }
  }
  progress("restoring production");
  let restored: { servingAt: Date; seconds: number };
  try {
    restored = await restoreProduction(plan);
  } catch (error) {
    // The watchdog stays armed and retries at its deadline; the lock keeps the journal for `recover`.
    // The caller's run_finished records this error: one per run.
    throw new GpuCanaryError("PRODUCTION_NOT_RESTORED", `production could not be restored after the canary: ${messageOf(error)}`, {
      kind: "fault",
      hint: "bring production back by hand, then run `gpu-canary recover` to charge the downtime and release the lock; the restore watchdog retries at its deadline",
    });
  }
  const downtime = (restored.servingAt.getTime() - stoppedAt.getTime()) / 1000;
  // The lock may have been taken from this run meanwhile (`lock release --force`): its journal can
  // no longer be written, but the outage it caused is still charged — charges are keyed by run id.
  let journalLost: unknown = null;
  const journal = (patch: Parameters<GpuLockHandle["journal"]>[0]) =>
    handle.journal(patch).catch((error: unknown) => {
      journalLost ??= error;
    });
  await journal({ phase: "restored", production_serving_at: restored.servingAt.toISOString() });
  await audit.append({ event: "production_restored", run_id: runId, seconds: restored.seconds, downtime_seconds: downtime });
  try {
    const charge = await ctx.budget.charge(night, runId, downtime);
    await journal({ phase: "charged", charged_at: new Date().toISOString() });
    await audit.append({
      event: "budget_charged",
      run_id: runId,
      date: night,
      seconds: downtime,
      seconds_used: charge.status.secondsUsed,
      max_seconds: charge.status.maxSeconds,
    });
  } finally {
    // Production serves: the watchdog has nothing left to do. An uncharged run stays in the lock's
    // journal for `recover`.
    await watchdog.disarm();
  }
  if (journalLost !== null && !ctx.signal?.aborted) throw journalLost instanceof Error ? journalLost : new Error(messageOf(journalLost));
  const slaNote =
    restored.seconds > config.restoreSlaSeconds
      ? `; production took ${restored.seconds.toFixed(1)} s to serve again, over the ${config.restoreSlaSeconds} s restore SLA`
      : "";
  progress(`production serves again: ${downtime.toFixed(1)} s of downtime charged to the night of ${night}`);

  // Interrupted at any point after the quiesce — the restore included — the run unwound and is
  // reported interrupted: never passed, never a promotion.
  if (ctx.signal?.aborted) throw abortError(ctx.signal);
  if (failure !== null) throw failure instanceof Error ? failure : new Error(messageOf(failure));
  const result = outcome ?? { status: "error" as const, reason: "no verdict", gate: null, measured: null, whisperVerified: false };
  if (result.measured) result.measured.downtimeSeconds = downtime;
  const extra = steps.length > 0 ? `; ${steps.join("; ")}` : "";
  return { ...result, reason: `${result.reason}${slaNote}${extra}` };
}
