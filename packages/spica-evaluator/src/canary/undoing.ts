import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import type { GpuProcess } from "@gpu-canary/gpu-probe";
import { type CanaryProcess, type WhisperControlDeps, switchWhisper, whisperConfigured, whisperProcesses } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import type { RunContext } from "../context.ts";
import type { AuditFields } from "./steps.ts";

// The undoing of a run's steps, shared by the run itself and by `recover`: both visibly do the same thing.

export function whisperDepsOf(ctx: Pick<RunContext, "config" | "probe" | "env">): WhisperControlDeps {
  const { config } = ctx;
  return {
    ...(config.whisperStopCommand ? { stopCommand: config.whisperStopCommand } : {}),
    ...(config.whisperStartCommand ? { startCommand: config.whisperStartCommand } : {}),
    processMatch: config.whisperProcess,
    gpuIndex: config.productionGpuId,
    probe: ctx.probe,
    env: ctx.env,
  };
}

/** Whether a quiesced run of this candidate switches Whisper (there, and back before production restarts). */
export function switchesWhisper(ctx: Pick<RunContext, "config" | "probe" | "env">, candidate: Candidate): boolean {
  return whisperConfigured(whisperDepsOf(ctx)) && candidate.whisperModelSize !== ctx.config.whisperSize;
}

/** The Whisper processes nvidia-smi shows on the production GPU. */
export function whisperOnCard(ctx: Pick<RunContext, "config" | "probe" | "env">): Promise<GpuProcess[]> {
  return whisperProcesses({ ...whisperDepsOf(ctx), probe: ctx.probe });
}

const described = (processes: GpuProcess[]) =>
  processes.map((p) => `${p.name} (PID ${p.pid}, ${p.usedMemoryMib ?? "?"} MiB)`).join(", ") || "none";

/**
 * Switch Whisper and see it switched: the new Whisper's memory steady (two nvidia-smi readings a
 * poll apart agree, within KLR_WHISPER_STEADY_TIMEOUT: else WHISPER_NOT_STEADY), then a Whisper on
 * the card and none of the processes that ran before — two Whispers on the card (a stop command
 * that missed the old unit) would make the canary's numbers meaningless. Throws naming what it saw.
 * Every vLLM start that follows (the canary's, production's) comes only after this returned.
 */
export async function switchWhisperSeen(
  ctx: Pick<RunContext, "config" | "probe" | "env" | "whisperPollMs">,
  from: string,
  to: string,
): Promise<AuditFields> {
  const before = await whisperOnCard(ctx);
  const { footprintMib, steady, commandsSeconds } = await switchWhisper(whisperDepsOf(ctx), from, to, 30_000, {
    timeoutMs: ctx.config.whisperSteadyTimeoutSeconds * 1000,
    ...(ctx.whisperPollMs !== undefined ? { pollMs: ctx.whisperPollMs } : {}),
  });
  const after = await whisperOnCard(ctx);
  const stale = after.filter((p) => before.some((b) => b.pid === p.pid));
  if (to !== "none" && (after.length === 0 || stale.length > 0)) {
    throw new GpuCanaryError(
      "WHISPER_NOT_SWITCHED",
      `after switching Whisper ${from} → ${to}, nvidia-smi shows ${stale.length > 0 ? `the old Whisper still running: ${described(stale)}; all Whispers: ${described(after)}` : "no Whisper"}`,
      {
        kind: "fault",
        hint: "check that KLR_WHISPER_STOP_COMMAND stops whichever Whisper runs and KLR_WHISPER_PROCESS names it in nvidia-smi",
      },
    );
  }
  return {
    from,
    to,
    footprint_mib: footprintMib,
    seen: described(after),
    // The worst case reads the commands' time; the steady wait is bounded by its timeout.
    commands_seconds: commandsSeconds,
    ...(steady ? { steady_readings_mib: steady.readingsMib, steady_seconds: steady.seconds } : {}),
  };
}

export function notRestored(error: unknown, by: "the canary run" | "the settings change" | "recovery"): GpuCanaryError {
  return new GpuCanaryError("PRODUCTION_NOT_RESTORED", `production could not be restored after ${by}: ${messageOf(error)}`, {
    kind: "fault",
    hint:
      by === "recovery"
        ? "start production by hand (systemctl start, or KLR_PRODUCTION_START_COMMAND), then run `gpu-canary recover` again to charge the downtime and release the lock"
        : "bring production back by hand, then run `gpu-canary recover` to charge the downtime and release the lock; the restore watchdog retries at its deadline",
  });
}

/** Charge an outage to its night and say so in the audit trail (once per run id). */
export async function chargeOutage(
  ctx: Pick<RunContext, "budget" | "audit">,
  charge: { night: string; runId: string; seconds: number },
): Promise<void> {
  const result = await ctx.budget.charge(charge.night, charge.runId, charge.seconds);
  if (!result.charged) return;
  await ctx.audit.append({
    event: "budget_charged",
    run_id: charge.runId,
    date: charge.night,
    seconds: charge.seconds,
    seconds_used: result.status.secondsUsed,
    max_seconds: result.status.maxSeconds,
  });
}

/** Stop the canary's whole process group: the audit fields, or a note when it would not stop. */
export async function stopCanary(canary: CanaryProcess | null): Promise<AuditFields | string | undefined> {
  if (!canary) return undefined;
  const started = Date.now();
  try {
    await canary.stop(5000);
  } catch (error) {
    return `the canary could not be stopped: ${messageOf(error)}`;
  }
  return { seconds: (Date.now() - started) / 1000 };
}
