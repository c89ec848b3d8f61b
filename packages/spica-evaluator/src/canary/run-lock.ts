import { CrashedRunError, GpuLockHeldError, type GpuLockHandle, awaitsRecovery } from "@gpu-canary/gpu-lock";
import { type RestorePlan, type Watchdog, armWatchdog } from "@gpu-canary/vllm-control";
import { messageOf } from "@gpu-canary/errors";
import type { RunContext } from "../context.ts";
import type { FleetSlotHold } from "../fleet-gate.ts";
import type { Refusal } from "./gates.ts";
import { armFilePath, runReportPath } from "./watchdog-reports.ts";
import { type WorstCase, watchdogDeadlineSeconds } from "./worst-case.ts";

export interface HeldRun {
  handle: GpuLockHandle;
  /** the run's signal and the lock's loss, as one */
  signal: AbortSignal;
  stopRenewal: () => void;
  /** aborts the run's signal: the lock's or the fleet slot's loss */
  lose: (error: Error) => void;
  /** the fleet maintenance slot, once taken (takeFleetSlot) */
  slot: FleetSlotHold | null;
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
  return { handle, signal, stopRenewal, lose: (error) => lost.abort(error), slot: null };
}

/**
 * KLR_STATE_URL: one of the fleet's maintenance slots, after the gates under the lock and before the
 * rate limit admits the run. Held, the lock's fence check before each destructive step asks the
 * slot too; a refusal (the holders, or the database away) is the `fleet_slot` gate's.
 */
export async function takeFleetSlot(ctx: RunContext, held: HeldRun, runId: string): Promise<Refusal | null> {
  if (!ctx.fleet) return null;
  let taken;
  try {
    taken = await ctx.fleet.take(runId, { ...(ctx.signal ? { signal: ctx.signal } : {}), onLost: held.lose });
  } catch (error) {
    return { gate: "fleet_slot", reason: messageOf(error) };
  }
  if ("refusal" in taken) return { gate: "fleet_slot", reason: taken.refusal };
  const slot = taken;
  held.slot = slot;
  const lock = held.handle;
  held.handle = {
    ...lock,
    checkFence: async () => {
      await lock.checkFence();
      await slot.assertHeld();
    },
  };
  ctx.onProgress?.(`fleet maintenance slot taken (fencing token ${slot.token})`);
  return null;
}

/**
 * The end of a run's hold: released, unless production was quiesced and the run did not finish (not
 * restored, or not charged) — then the journal stays in the lock for `gpu-canary recover`.
 */
export async function leaveRunLock(ctx: RunContext, held: HeldRun): Promise<void> {
  held.stopRenewal();
  const keep = awaitsRecovery(held.handle.record());
  if (held.slot) {
    // The database away: the slot stays held (never freed by time) until this host's `recover`.
    await held.slot
      .end({ keep })
      .catch((error: unknown) =>
        ctx.onProgress?.(`the fleet maintenance slot could not be released (${messageOf(error)}); \`gpu-canary recover\` releases it`),
      );
  }
  if (keep) ctx.onProgress?.("the lock keeps this run's journal for `gpu-canary recover`");
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
