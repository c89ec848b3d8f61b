import { CrashedRunError, GpuLockHeldError, type GpuLockHandle, awaitsRecovery } from "@gpu-canary/gpu-lock";
import { type RestorePlan, type Watchdog, armWatchdog } from "@gpu-canary/vllm-control";
import type { RunContext } from "../context.ts";
import type { Refusal } from "./gates.ts";
import { armFilePath, runReportPath } from "./watchdog-reports.ts";
import { type WorstCase, watchdogDeadlineSeconds } from "./worst-case.ts";

export interface HeldRun {
  handle: GpuLockHandle;
  /** the run's signal and the lock's loss, as one */
  signal: AbortSignal;
  stopRenewal: () => void;
}

/** The GPU lock for a run, without waiting, renewed as it goes: held by another or a crashed run is a refusal. */
export async function takeRunLock(ctx: RunContext, purpose: string, runId: string): Promise<HeldRun | { refusal: Refusal }> {
  let handle: GpuLockHandle;
  try {
    handle = await ctx.lock.acquire({ purpose, runId, waitSeconds: 0 });
  } catch (error) {
    if (error instanceof GpuLockHeldError) return { refusal: { gate: "lock", reason: error.message } };
    if (error instanceof CrashedRunError) return { refusal: { gate: "crashed_run", reason: error.message } };
    throw error;
  }
  const lost = new AbortController();
  const stopRenewal = handle.startRenewal((error) => lost.abort(error));
  const signal = ctx.signal ? AbortSignal.any([ctx.signal, lost.signal]) : lost.signal;
  return { handle, signal, stopRenewal };
}

/**
 * The end of a run's hold: released, unless production was quiesced and the run did not finish (not
 * restored, or not charged) — then the journal stays in the lock for `gpu-canary recover`.
 */
export async function leaveRunLock(ctx: RunContext, held: HeldRun): Promise<void> {
  held.stopRenewal();
  if (awaitsRecovery(held.handle.record())) ctx.onProgress?.("the lock keeps this run's journal for `gpu-canary recover`");
  else await held.handle.release();
}

/** The restore watchdog of a run that stops production: its deadline the worst case, or earlier when the budget left needs it. */
export async function armRunWatchdog(
  ctx: RunContext,
  run: { runId: string; night: string; worst: WorstCase; plan: RestorePlan },
): Promise<Watchdog> {
  const budgetLeft = (await ctx.budget.status(run.night)).secondsLeft;
  return armWatchdog({
    runId: run.runId,
    deadline: new Date(Date.now() + watchdogDeadlineSeconds(run.worst, budgetLeft) * 1000),
    restore: run.plan,
    restoreEstimateSeconds: run.worst.restoreSeconds,
    armFile: armFilePath(ctx.layout.locksDir),
    reportPath: ctx.layout.watchdogReport,
    runReportPath: runReportPath(ctx.layout.watchdogReports, run.runId),
    ...(ctx.useSystemdRun !== undefined ? { useSystemdRun: ctx.useSystemdRun } : {}),
  });
}
