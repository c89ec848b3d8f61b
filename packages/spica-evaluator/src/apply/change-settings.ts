import { GpuCanaryError } from "@gpu-canary/errors";
import {
  type Applied,
  type AppliedEntry,
  keepInHistory,
  productionServes,
  readApplied,
  readVllmConfig,
  servedUtilization,
  withGpuMemoryUtilization,
  writeApplied,
} from "@gpu-canary/vllm-control";
import { type RunContext, restorePlanOf } from "../context.ts";
import { recoverIfCrashed } from "../recover.ts";
import type { Measured } from "../result.ts";
import { auditWatchdogReports } from "../canary/watchdog-reports.ts";
import { type Refusal, checkGates } from "../canary/gates.ts";
import { leaveRunLock, takeFleetSlot, takeRunLock } from "../canary/run-lock.ts";
import { abortReason, announce, runSteps, stepIoOf } from "../canary/steps.ts";
import { type WorstCase, loggedProductionStart, worstCase } from "../canary/worst-case.ts";
import { type SettingsRun, type SettingsTarget, VerificationFailed, settingsSteps } from "./settings-steps.ts";

/** The subsystem whose rate limit applies and rollbacks count against. */
export const APPLY_SUBSYSTEM = "apply";

export interface SettingsChangeOutcome {
  /** applied: production serves the new settings, verified; rolled_back: it failed verification and serves the previous ones */
  status: "applied" | "rolled_back" | "refused";
  reason: string;
  gate: string | null;
  runId: string;
  from: number | null;
  to: number;
  downtimeSeconds: number | null;
  measured: Measured | null;
  /** applied.json as the change left it */
  applied: Applied | null;
  historyFile: string | null;
}

export interface SettingsChange {
  kind: "apply" | "rollback";
  runId: string;
  to: SettingsTarget;
  /** what applied.json becomes once the new settings are verified */
  entry: Omit<AppliedEntry, "file" | "applied_at">;
  /**
   * a rollback after production's own out-of-memory exit: with production down it goes ahead at
   * once, outside the window and whatever the budget and rate limit say (it is down anyway); charged
   */
  evenIfDown?: boolean;
  /** false for a rollback: going back to settings production ran before waits for no cooldown (window, budget and lock still apply) */
  rateLimited?: boolean;
}

/**
 * An apply's worst case: production stopped and started, the verification's load (at most
 * KLR_CANARY_TIMEOUT), and a rollback's stop and start. The window must hold all of it; the budget
 * only the two restarts — production serves while it is verified.
 */
export function applyWorstCase(w: WorstCase): WorstCase {
  const round = (n: number) => Math.round(n * 10) / 10;
  const restart = round(w.quiesceSeconds + w.restoreSeconds);
  return {
    ...w,
    canaryStopSeconds: w.quiesceSeconds,
    whisperSeconds: 0,
    totalSeconds: round(2 * restart + w.canaryTimeoutSeconds),
    downtimeSeconds: round(2 * restart),
    basis: `2 × restart ${restart} s (stop and start, the second a rollback), and verification ≤ ${w.canaryTimeoutSeconds} s while production serves; from ${w.basis}`,
  };
}

const usage = (code: string, message: string, hint: string) => new GpuCanaryError(code, message, { kind: "usage", hint });

/** Production's config file (KLR_VLLM_CONFIG): an apply has nothing to write without it. */
export function configPathOf(ctx: RunContext): string {
  const path = ctx.config.vllmConfigFile;
  if (path === undefined)
    throw usage(
      "NO_VLLM_CONFIG",
      "KLR_VLLM_CONFIG is not set: gpu-canary changes production's settings only through vLLM's --config file",
      "set KLR_VLLM_CONFIG to the file production starts with (`vllm serve --config FILE`); `gpu-canary doctor` checks its unit",
    );
  return path;
}

/**
 * What applied.json says now; before any apply, what production runs with (its config file, kept in
 * the history so that a rollback and the watchdog can put it back).
 */
export async function appliedNow(ctx: RunContext, served: number | null): Promise<Applied> {
  const recorded = await readApplied(ctx.layout.appliedFile);
  if (recorded) return recorded;
  const file = await readVllmConfig(configPathOf(ctx));
  const at = ctx.now();
  const util = served ?? file.gpuMemoryUtilization;
  if (util === null)
    throw new GpuCanaryError("PRODUCTION_UNKNOWN", `production does not serve, and ${file.path} sets no gpu-memory-utilization`, {
      kind: "refused",
      hint: "start production and apply again: what it serves with is what a rollback goes back to",
    });
  const kept = await keepInHistory(ctx.layout.vllmHistoryDir, at, "before-gpu-canary", file.text);
  const initial: Applied = {
    // What production serves is what it runs; the file may say otherwise (a command line overriding it).
    vllm_memory_util: util,
    whisper_model_size: ctx.config.whisperSize,
    promotion_run_id: null,
    applied_at: null,
    file: kept,
    run_id: null,
    previous: null,
  };
  await writeApplied(ctx.layout.appliedFile, initial);
  return initial;
}

/**
 * Change production's settings under the gates of a quiesced run: the window, tonight's budget for
 * the apply's worst case, the `apply` rate limit, the lock and no crashed run. The steps
 * (settings-steps.ts) put the previous file back on every way out but a passed verification.
 */
export async function changeSettings(ctx: RunContext, change: SettingsChange): Promise<SettingsChangeOutcome> {
  const { runId } = change;
  // A crashed run first: it may have left production stopped, or on a file it did not verify.
  const recovered = await recoverIfCrashed(ctx);
  if (recovered) ctx.onProgress?.(recovered.detail);
  await auditWatchdogReports(ctx);
  const restart = restorePlanOf(ctx.config, ctx.env, "stop");
  const answers = await servedUtilization(restart);
  const down = answers === null && change.evenIfDown === true && !(await productionServes(restart, 3000));
  if (answers === null && !down)
    throw new GpuCanaryError("PRODUCTION_UNKNOWN", `production at ${ctx.config.vllmUrl} does not say what it serves with`, {
      kind: "refused",
      hint: "production must serve and export vllm:cache_config_info on /metrics before its settings change (`gpu-canary production`)",
    });
  const outcome = (patch: Partial<SettingsChangeOutcome>): SettingsChangeOutcome => ({
    status: "refused",
    reason: "",
    gate: null,
    runId,
    from: answers,
    to: change.to.gpuMemoryUtilization,
    downtimeSeconds: null,
    measured: null,
    applied: null,
    historyFile: null,
    ...patch,
  });
  const refused = async (refusal: Refusal) => {
    await ctx.audit.append({ event: "gate_refused", run_id: runId, gate: refusal.gate, reason: refusal.reason });
    return outcome({ reason: `refused by the ${refusal.gate} gate: ${refusal.reason}`, gate: refusal.gate });
  };

  const logged = await loggedProductionStart(ctx.config);
  const worst = applyWorstCase(await worstCase(ctx.audit, ctx.config, ctx.now(), logged, null));
  const unlimited = down || change.rateLimited === false;
  const gateRun = { subsystem: APPLY_SUBSYSTEM, path: "apply" as const, worst, productionDown: down, rateLimited: !unlimited };
  const quick = await checkGates(ctx, gateRun);
  if (quick.refusal) return refused(quick.refusal);

  const held = await takeRunLock(ctx, `${change.kind} ${change.to.name}`, runId);
  if ("refusal" in held) return refused(held.refusal);
  const { signal } = held;
  try {
    const under = await checkGates(ctx, { ...gateRun, underLock: true });
    if (under.refusal) return await refused(under.refusal);
    // Production down already (its own out-of-memory exit): bringing it back waits for no fleet slot.
    const fleetRefusal = down ? null : await takeFleetSlot(ctx, held, runId);
    if (fleetRefusal) return await refused(fleetRefusal);
    const { handle } = held;
    const admitted = unlimited
      ? { allowed: true, reason: down ? "production is down: no rate limit" : "a rollback: no rate limit" }
      : await ctx.rate.admit(APPLY_SUBSYSTEM, runId);
    if (!admitted.allowed) return await refused({ gate: "rate_limit", reason: admitted.reason });
    await handle.journal({ phase: "admitted" });
    announce(ctx, "admitted", `gates passed (${change.kind}${down ? ", production down" : ""}); ${admitted.reason}`);
    // Recorded under the lock only: a refused change writes nothing.
    const before = await appliedNow(ctx, answers);
    // Down after its own out-of-memory exit: what applied.json says it was given.
    const served = answers ?? before.vllm_memory_util;
    if (served === null)
      throw new GpuCanaryError("PRODUCTION_UNKNOWN", `production is down and ${ctx.layout.appliedFile} does not say what it ran with`, {
        kind: "refused",
        hint: "start production by hand; `gpu-canary production` shows what it serves with",
      });
    const inner = { ...ctx, signal };
    // Read under the lock: the operator's other keys and comments as they are now, kept as they were
    // (the way back) and carried into the new file.
    const configPath = configPathOf(ctx);
    const current = await readVllmConfig(configPath);
    const text = withGpuMemoryUtilization(configPath, current.text, change.to.gpuMemoryUtilization);
    const restoreFrom = await keepInHistory(ctx.layout.vllmHistoryDir, new Date(), `${change.to.name}-replaced`, current.text);
    const state: SettingsRun = {
      ctx: inner,
      runId,
      handle,
      night: under.night,
      worst,
      to: change.to,
      text,
      plan: { ...restorePlanOf(ctx.config, ctx.env, "stop"), settings: { configPath, restoreFrom, gpuMemoryUtilization: served } },
      observed: { baseline: null, shape: null },
      watchdog: null,
      historyFile: null,
      stoppedAt: null,
      startIssued: false,
      servingNewAt: null,
      verdict: null,
      kept: false,
      rollbackAt: null,
      restored: null,
      chargedSeconds: null,
      journalLost: null,
      keep: async (s) => {
        const current: AppliedEntry = {
          vllm_memory_util: before.vllm_memory_util,
          whisper_model_size: before.whisper_model_size,
          promotion_run_id: before.promotion_run_id,
          applied_at: before.applied_at,
          file: before.file,
        };
        await writeApplied(ctx.layout.appliedFile, {
          ...change.entry,
          applied_at: new Date().toISOString(),
          file: s.historyFile ?? before.file,
          run_id: runId,
          change: change.kind,
          previous: current,
        });
      },
    };
    const { failure, notes } = await runSteps(settingsSteps, state, stepIoOf(inner, runId, handle));
    // Kept, the change is done whatever came after (a signal, the lock's loss): it is reported as applied.
    const aborted = state.kept ? null : abortReason(signal);
    if (aborted) throw aborted;
    const after = await readApplied(ctx.layout.appliedFile);
    const done = {
      from: served,
      downtimeSeconds: state.chargedSeconds,
      historyFile: state.historyFile,
      applied: after,
      measured: state.verdict?.measured ?? null,
    };
    // After the commit point a failure is the charge's, or the lock's: the journal waits for `recover`.
    if (state.kept && failure) notes.push(`but ${failure.message}: run \`gpu-canary recover\` to charge the downtime`);
    const extra = notes.length > 0 ? `; ${notes.join("; ")}` : "";
    if (failure instanceof VerificationFailed && state.restored && !state.journalLost) {
      await ctx.audit.append({
        event: "settings_rolled_back",
        run_id: runId,
        from: change.to.gpuMemoryUtilization,
        to: served,
        reason: failure.message,
      });
      return outcome({
        ...done,
        status: "rolled_back",
        reason: `${failure.message}; production was put back on gpu-memory-utilization ${served}${extra}`,
        measured: failure.measured ?? done.measured,
      });
    }
    if (failure && !state.kept) throw failure;
    if (state.journalLost && !state.kept) throw state.journalLost;
    await ctx.audit.append({
      event: "settings_applied",
      run_id: runId,
      from: served,
      to: change.to.gpuMemoryUtilization,
      history_file: state.historyFile ?? "",
      kind: change.kind,
    });
    return outcome({
      ...done,
      status: "applied",
      reason: `production serves gpu-memory-utilization ${change.to.gpuMemoryUtilization}, verified under load: ${state.verdict?.reason ?? ""}${extra}`,
    });
  } finally {
    await leaveRunLock(ctx, held);
  }
}
