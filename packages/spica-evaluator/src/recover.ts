import { rm } from "node:fs/promises";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import { GpuLockHeldError, GpuLockUnreadableError, type GpuLockRecord, timeOf } from "@gpu-canary/gpu-lock";
import { nightOf } from "@gpu-canary/policy";
import {
  type RestorePlan,
  productionServes,
  putBackSettings,
  readApplied,
  readArmFile,
  restoreUnlessServing,
  stopProcessGroup,
  writeApplied,
} from "@gpu-canary/vllm-control";
import { armFilePath, auditReport, auditWatchdogReports, reportFor, waitForWatchdog } from "./canary/watchdog-reports.ts";
import { chargeOutage, notRestored, switchWhisperSeen } from "./canary/undoing.ts";
import { type RunContext, restorePlanOf } from "./context.ts";

export interface RecoveryOutcome {
  /** nothing: no crashed run; recovered: a crashed run was finished */
  action: "nothing" | "released_stale" | "recovered";
  runId: string | null;
  /** production serves again (checked now) */
  productionServing: boolean;
  /** who brought production back */
  restoredBy: "watchdog" | "recover" | "already_serving" | null;
  chargedSeconds: number | null;
  night: string | null;
  detail: string;
}

/**
 * Finish what a crashed run left (docs/architecture.md, invariants 1, 3 and 4): production restored (by the
 * watchdog, or now), the downtime in the lock's journal charged, the lock released, all audited.
 * A live holder is never touched (refused, exit 3). With KLR_STATE_URL, this host's fleet
 * maintenance slot is released last: a crashed run's, or one whose release found the database away.
 */
export async function recover(ctx: RunContext): Promise<RecoveryOutcome> {
  const outcome = await recoverOnHost(ctx);
  if (!ctx.fleet) return outcome;
  const note = await releaseOwnSlots(ctx, ctx.fleet, outcome.runId);
  return note === null ? outcome : { ...outcome, detail: `${outcome.detail}; ${note}` };
}

/**
 * Under the GPU lock, so that no run of this host takes a slot meanwhile: every slot this host
 * holds is then a dead run's. Says what it did, or null when there was nothing.
 */
async function releaseOwnSlots(ctx: RunContext, fleet: NonNullable<RunContext["fleet"]>, runId: string | null): Promise<string | null> {
  let handle;
  try {
    handle = await ctx.lock.acquire({ purpose: "recover: fleet slot", waitSeconds: 0 });
  } catch (error) {
    if (error instanceof GpuLockHeldError) return "the fleet maintenance slot was left alone: a run of this host holds the GPU lock";
    throw error;
  }
  try {
    const reason = runId ? `recovery of run ${runId}` : "recovery";
    const freed = await fleet.releaseOwn(reason).catch((error: unknown) => messageOf(error));
    if (typeof freed === "string")
      return `this host's fleet maintenance slot could not be released (${freed}): run \`gpu-canary recover\` again`;
    if (freed.runIds.length === 0) return null;
    await ctx.audit.append({ event: "fleet_slot_released", run_id: runId, runs: freed.runIds, forced: false, reason });
    return `released this host's fleet maintenance slot (run ${freed.runIds.join(", ")})`;
  } finally {
    await handle.release();
  }
}

async function recoverOnHost(ctx: RunContext): Promise<RecoveryOutcome> {
  await auditWatchdogReports(ctx);
  const status = await ctx.lock.status();
  if (status.state === "unreadable")
    throw new GpuLockUnreadableError(ctx.lock.path, status.reason, status.hint ?? "see `gpu-canary lock status`");
  if (status.state === "free") {
    return {
      action: "nothing",
      runId: null,
      productionServing: await serves(ctx),
      restoredBy: null,
      chargedSeconds: null,
      night: null,
      detail: "no crashed run: the GPU lock is free",
    };
  }
  if (status.state === "held") {
    throw new GpuCanaryError("RUN_IN_PROGRESS", `the GPU lock is held by a live run (${status.reason}); there is nothing to recover`, {
      kind: "refused",
      hint: "wait for it to finish; `gpu-canary lock status` shows the holder",
    });
  }
  const armFile = armFilePath(ctx.layout.locksDir);
  await waitForWatchdog(armFile, status.holder?.run_id, (ctx.config.restoreSlaSeconds * 4 + 10) * 1000);
  // The crashed run's journal is published with the recovery's own record: at no instant does the
  // lock lack it, so a recovery killed or failing part-way leaves it for the next one.
  const { handle, evicted } = await ctx.lock.takeOverForRecovery({
    purpose: "recover",
    waitSeconds: 0,
    ...(status.holder?.run_id ? { runId: status.holder.run_id } : {}),
    ...(status.holder ? { journal: journalOf(status.holder) } : {}),
  });
  const runId = evicted?.run_id ?? null;
  if (!evicted || evicted.production_stopped_at === undefined || evicted.charged_at !== undefined) {
    try {
      // An apply that died after writing the new file and before stopping production: production still runs the old one.
      if (evicted?.settings_restore && evicted.charged_at === undefined && evicted.settings_kept_at === undefined)
        await settingsBack(ctx, evicted, runId);
      await ctx.audit.append({ event: "recovery", run_id: runId, action: "released_stale" });
      // A canary run that died before it stopped production (or after its charge) never said how it ended.
      if (runId !== null)
        await ctx.audit.append({
          event: "run_finished",
          run_id: runId,
          status: "error",
          mode: "canary",
          reason: `crashed ${evicted?.phase ? `at ${evicted.phase}` : "just after taking the lock"}; released by recovery`,
        });
    } finally {
      await handle.release();
    }
    return {
      action: "released_stale",
      runId,
      productionServing: await serves(ctx),
      restoredBy: null,
      chargedSeconds: null,
      night: null,
      detail: `released a stale lock (${status.reason}); the run had not stopped production or had already charged its downtime`,
    };
  }
  // A restore can outlast the lease: renewed, no other recovery takes this one over mid-way.
  const stopRenewal = handle.startRenewal(() => undefined);
  let outcome: RecoveryOutcome;
  try {
    // The record may have changed between the look and the takeover: carry over the one actually evicted.
    await handle.journal(journalOf(evicted));
    outcome = await finishCrashedRun(ctx, evicted, armFile, (patch) => handle.journal(patch));
  } catch (error) {
    stopRenewal();
    // Our lease lapses now, so the next `recover` (after the operator's fix) takes the journal over
    // at once — even while this process (the daemon) lives on.
    await handle.journal({ phase: "recovery_failed", expires_at: new Date().toISOString() }).catch(() => undefined);
    throw error;
  }
  stopRenewal();
  await handle.release();
  return outcome;
}

/** An apply's way back, from its journal: the previous file, and what production serves with then. */
function planOf(ctx: RunContext, record: GpuLockRecord): RestorePlan {
  const plan = restorePlanOf(ctx.config, ctx.env, record.quiesce ?? ctx.config.quiesce);
  // Kept (verified and recorded): there is nothing to go back to.
  const s = record.settings_kept_at === undefined ? record.settings_restore : undefined;
  return s
    ? {
        ...plan,
        quiesce: "stop",
        settings: { configPath: s.config_path, restoreFrom: s.restore_from, gpuMemoryUtilization: s.gpu_memory_utilization },
      }
    : plan;
}

/**
 * A crashed apply's settings put back: the file, and applied.json when the run had recorded its
 * unverified settings as applied (it died before it could disarm, and the watchdog put them back).
 */
async function settingsBack(ctx: RunContext, record: GpuLockRecord, runId: string | null): Promise<void> {
  const settings = planOf(ctx, record).settings;
  if (!settings) return;
  await putBackSettings(settings);
  const applied = await readApplied(ctx.layout.appliedFile);
  if (applied && runId !== null && applied.run_id === runId && applied.previous)
    await writeApplied(ctx.layout.appliedFile, { ...applied.previous, run_id: runId, previous: null });
}

/** The fields of a crashed run's record that recovery needs: when production stopped, how, and whether it serves. */
function journalOf(record: GpuLockRecord): Partial<GpuLockRecord> {
  return {
    phase: "recovering",
    ...(record.quiesce ? { quiesce: record.quiesce } : {}),
    ...(record.production_stopped_at ? { production_stopped_at: record.production_stopped_at } : {}),
    ...(record.production_serving_at ? { production_serving_at: record.production_serving_at } : {}),
    ...(record.settings_restore ? { settings_restore: record.settings_restore } : {}),
    ...(record.settings_kept_at ? { settings_kept_at: record.settings_kept_at } : {}),
  };
}

/**
 * Recover a crashed quiesced run if the lock holds one whose holder is gone (a new run and the
 * daemon's start do this first); null when there is nothing to recover. A live run is left alone.
 */
export async function recoverIfCrashed(ctx: RunContext): Promise<RecoveryOutcome | null> {
  const status = await ctx.lock.status();
  // A run that died holding the lock — quiesced or not — is finished by recovery, so that it too
  // ends with one run_finished; a stale `lock run` holder (no run) is left to the plain acquire.
  if (!(status.stale && (status.awaitsRecovery || status.holder?.run_id !== undefined))) return null;
  ctx.onProgress?.(`a crashed run awaits recovery (${status.reason}): recovering it first`);
  return recover(ctx);
}

const serves = (ctx: RunContext): Promise<boolean> => productionServes(restorePlanOf(ctx.config, ctx.env, ctx.config.quiesce), 5000);

async function finishCrashedRun(
  ctx: RunContext,
  evicted: GpuLockRecord,
  armFile: string,
  journal: (patch: Partial<GpuLockRecord>) => Promise<void>,
): Promise<RecoveryOutcome> {
  const runId = evicted.run_id ?? null;
  const stoppedAt = timeOf(evicted.production_stopped_at) ?? Date.now();
  // The undo of the steps the journal shows, as the run itself does them: the canary it left behind
  // (it still holds the GPU), Whisper back to production's size, production restored, the charge.
  const arm = await readArmFile(armFile).catch(() => null);
  for (const pgid of new Set([evicted.canary_pgid, arm?.canary_pgid])) if (pgid) await stopProcessGroup(pgid, 3000);
  await rm(armFile, { force: true });
  const found = await reportFor(ctx, runId);
  if (found) await auditReport(ctx, found.path, found.report);
  const fired = found?.report ?? null;
  const notes: string[] = [];
  // A watchdog that fired switched Whisper back already (its report says so).
  if (evicted.whisper_at !== undefined && evicted.whisper_at !== ctx.config.whisperSize && fired?.whisper_restored !== true) {
    const back = await switchWhisperSeen(ctx, evicted.whisper_at, ctx.config.whisperSize).catch((error: unknown) => messageOf(error));
    if (typeof back === "string") notes.push(`Whisper could not be switched back to ${ctx.config.whisperSize}: ${back}`);
    else
      await ctx.audit.append({ event: "whisper_switched", run_id: runId, ...back, from: evicted.whisper_at, to: ctx.config.whisperSize });
  }

  // An apply's "serving at" is its new settings' start, which the way back undoes: not the end of the outage.
  const apply = evicted.settings_restore !== undefined && evicted.settings_kept_at === undefined;
  let servingAt: number | null = apply ? null : timeOf(evicted.production_serving_at);
  let restoredBy: RecoveryOutcome["restoredBy"] = servingAt === null ? null : "already_serving";
  if (servingAt === null && fired?.production_serving_at) {
    servingAt = Date.parse(fired.production_serving_at);
    restoredBy = "watchdog";
  }
  const plan = planOf(ctx, evicted);
  const servingNow = apply ? false : await serves(ctx);
  if (servingAt === null && servingNow) {
    // Brought back by hand or by a watchdog that left no report: the first completion seen is now.
    servingAt = Date.now();
    restoredBy = "already_serving";
  }
  if (servingAt === null || !servingNow) {
    ctx.onProgress?.(apply ? "putting production back on its settings before the apply" : "production is not serving: restoring it");
    try {
      const restored = await restoreUnlessServing(plan);
      if (apply) await settingsBack(ctx, evicted, runId);
      // Already serving the previous settings: the watchdog's report (read above) says when they came back.
      servingAt = restored.alreadyServing && servingAt !== null ? servingAt : restored.servingAt.getTime();
      restoredBy = restored.alreadyServing ? (fired?.production_serving_at ? "watchdog" : "already_serving") : "recover";
      await journal({ production_serving_at: new Date(servingAt).toISOString() });
      if (!restored.alreadyServing)
        await ctx.audit.append({ event: "production_restored", run_id: runId, seconds: restored.seconds, by: "recover" });
    } catch (error) {
      await ctx.audit.append({ event: "recovery", run_id: runId, action: "restore_failed", error: messageOf(error) });
      throw notRestored(error, "recovery");
    }
  }
  // Never under-counted: from the quiesce to the first completion seen afterwards.
  const seconds = Math.max(0, (servingAt - stoppedAt) / 1000);
  const night = nightOf(ctx.config.maintenanceWindow, ctx.config.maintenanceTimeZone, new Date(stoppedAt));
  await chargeOutage(ctx, { night, runId: runId ?? `recovered-${stoppedAt}`, seconds });
  await ctx.audit.append({ event: "recovery", run_id: runId, action: "recovered", restored_by: restoredBy, seconds });
  await ctx.audit.append({
    event: "run_finished",
    run_id: runId,
    status: "error",
    mode: apply ? "apply" : "canary",
    reason: apply ? "crashed; production put back on its settings before the change by recovery" : "crashed; finished by recovery",
  });
  return {
    action: "recovered",
    runId,
    productionServing: true,
    restoredBy,
    chargedSeconds: seconds,
    night,
    detail: `run ${runId ?? "?"} crashed after stopping production; ${restoredBy === "watchdog" ? "the watchdog" : restoredBy === "recover" ? "recovery" : "it"} brought production back; ${seconds.toFixed(1)} s of downtime charged to the night of ${night}${notes.map((n) => `; ${n}`).join("")}`,
  };
}
