import type { Candidate } from "../candidate.ts";
import type { RunContext } from "../context.ts";
import { recoverIfCrashed } from "../recover.ts";
import { auditWatchdogReports } from "./watchdog-reports.ts";
import type { Measured } from "../result.ts";
import { choosePath } from "./choose-path.ts";
import { type Refusal, checkGates } from "./gates.ts";
import { quiesced } from "./quiesced.ts";
import { leaveRunLock, takeFleetSlot, takeRunLock } from "./run-lock.ts";
import { abortReason, announce } from "./steps.ts";
import type { LoadTarget } from "./test-canary.ts";
import { switchesWhisper } from "./undoing.ts";
import { untouched } from "./untouched.ts";
import { loggedProductionStart, worstCase } from "./worst-case.ts";

export interface CanaryOutcome {
  status: "passed" | "failed" | "inconclusive" | "refused" | "error";
  reason: string;
  gate: string | null;
  measured: Measured | null;
  /** Whisper ran at the candidate's size during the test, as nvidia-smi showed it */
  whisperVerified: boolean;
}

/**
 * The canary run (docs/architecture.md, "The canary run"): quick gates, lock, the gates again, then the path's steps
 * (quiesced.ts, untouched.ts), whose undos leave production serving and charged on every way out.
 */
export async function runCanary(
  ctx: RunContext,
  candidate: Candidate,
  run: { runId: string; subsystem: string; target: LoadTarget },
): Promise<CanaryOutcome> {
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

  // A crashed run's lock is recovered first (as `recover` does), never stolen; a watchdog that fired
  // for a run that finished anyway still reaches the audit trail.
  const recovered = await recoverIfCrashed(ctx);
  if (recovered) progress(recovered.detail);
  await auditWatchdogReports(ctx);

  const chosen = await choosePath(ctx, candidate);
  if ("refusal" in chosen) return refused(chosen.refusal);
  const path = chosen.path;
  // A stopped production restarts as it last started; a sleeping one only wakes.
  const logged = config.quiesce === "stop" ? await loggedProductionStart(config) : null;
  const whisper =
    path === "quiesced" && switchesWhisper(ctx, candidate) ? { steadyTimeoutSeconds: config.whisperSteadyTimeoutSeconds } : null;
  const worst = await worstCase(audit, config, ctx.now(), logged, whisper);
  const quick = await checkGates(ctx, { subsystem: run.subsystem, path, worst });
  if (quick.refusal) return refused(quick.refusal);

  const held = await takeRunLock(ctx, `canary (${path}) ${JSON.stringify(candidate)}`, run.runId);
  if ("refusal" in held) return refused(held.refusal);
  const { signal } = held;
  try {
    const under = await checkGates(ctx, { subsystem: run.subsystem, path, worst, underLock: true });
    if (under.refusal) return await refused(under.refusal);
    // Only a run that takes production down needs one of the fleet's slots.
    const fleetRefusal = path === "quiesced" ? await takeFleetSlot(ctx, held, run.runId) : null;
    if (fleetRefusal) return await refused(fleetRefusal);
    const { handle } = held;
    const admitted = await ctx.rate.admit(run.subsystem, run.runId);
    if (!admitted.allowed) return await refused({ gate: "rate_limit", reason: admitted.reason });
    await handle.journal({ phase: "admitted" });
    announce(ctx, "admitted", `gates passed (${path}); ${admitted.reason}`);
    const inner = { ...ctx, signal };
    if (path === "quiesced") {
      const done = await quiesced(inner, { candidate, runId: run.runId, handle, night: under.night, worst, target: run.target });
      done.verdict.measured.downtimeSeconds = done.downtimeSeconds;
      return outcomeOf(done.verdict, done.notes, done.whisperVerified, signal);
    }
    const done = await untouched(inner, { candidate, runId: run.runId, handle, path, target: run.target });
    return outcomeOf(done.verdict, done.notes, false, signal);
  } finally {
    await leaveRunLock(ctx, held);
  }
}

function outcomeOf(
  verdict: { status: CanaryOutcome["status"]; reason: string; measured: Measured },
  notes: string[],
  whisperVerified: boolean,
  signal: AbortSignal,
): CanaryOutcome {
  // A test cut short by a signal or by the lock's loss is no verdict on the candidate.
  const aborted = abortReason(signal);
  if (aborted) throw aborted;
  const extra = notes.length > 0 ? `; ${notes.join("; ")}` : "";
  return { status: verdict.status, reason: `${verdict.reason}${extra}`, gate: null, measured: verdict.measured, whisperVerified };
}
