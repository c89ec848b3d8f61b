import { messageOf } from "@gpu-canary/errors";
import type { GpuLockHandle } from "@gpu-canary/gpu-lock";
import { type CanaryProcess, type Restored, restoreUnlessServing } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import { type RunContext, productionServiceOf, restorePlanOf } from "../context.ts";
import { rememberVllmSeen } from "../predictive/vllm-seen.ts";
import { type Step, HaltUnwind, runSteps, stepIoOf } from "./steps.ts";
import { type WatchedRun, journalQuietly, watchedSteps } from "./watched-steps.ts";
import { type LoadTarget, type TestVerdict, launch, testAndJudge } from "./test-canary.ts";
import { notRestored, stopCanary, switchWhisperSeen, switchesWhisper, whisperOnCard } from "./undoing.ts";
import type { WorstCase } from "./worst-case.ts";

/** One quiesced run as it goes: what the steps did so far, for their undos. */
export interface QuiescedRun extends WatchedRun {
  candidate: Candidate;
  target: LoadTarget;
  stoppedAt: Date | null;
  whisperAt: string;
  whisperSeen: boolean;
  /** Whether the Whisper of the configured size is on the card, asked as the test begins and read after it. */
  whisperCheck: Promise<boolean> | null;
  canary: CanaryProcess | null;
  verdict: TestVerdict | null;
  restored: Restored | null;
}

const switchesWhisperNow = (s: QuiescedRun) => switchesWhisper(s.ctx, s.candidate);

/** The quiesced run as steps (docs/canary-run.md); the undos (read bottom-up) are the way back on every way out. */
export const quiescedSteps: Step<QuiescedRun>[] = [
  ...watchedSteps<QuiescedRun>((s) => (s.restored && s.stoppedAt ? (s.restored.servingAt.getTime() - s.stoppedAt.getTime()) / 1000 : null)),
  {
    phase: "quiescing",
    says: (s) => `quiescing production (${s.ctx.config.quiesce}) — the downtime starts now`,
    // Journaled before the quiesce is issued: a crash from here on is found by recovery.
    journal: (s) => {
      s.stoppedAt = new Date();
      return { quiesce: s.ctx.config.quiesce, production_stopped_at: s.stoppedAt.toISOString() };
    },
    do: async (s) => {
      await s.handle.checkFence();
      const service = productionServiceOf(s.ctx);
      if (s.ctx.config.quiesce === "sleep") {
        await s.ctx.production.sleep(1, 30_000);
        // What sleep keeps on the card, for the next run's predictive check.
        const residue = (await service.gpuHolders().catch(() => [])).reduce((sum, h) => sum + (h.usedMemoryMib ?? 0), 0);
        if (residue > 0)
          await rememberVllmSeen(s.ctx.layout.vllmSeen, { seen_at: new Date().toISOString(), sleep_residue_mib: residue }).catch(
            () => undefined,
          );
      } else await service.stop(30_000);
      return { method: s.ctx.config.quiesce, seconds: (Date.now() - (s.stoppedAt?.getTime() ?? Date.now())) / 1000 };
    },
    event: "production_stopped",
    undo: {
      phase: "restoring",
      says: () => "restoring production",
      do: async (s) => {
        try {
          // Telling the watchdog is worth a try, never the restore itself (a full disk fails that write).
          s.restored = await restoreUnlessServing(s.plan, {
            starting: () => s.watchdog?.restoring().catch(() => undefined) ?? Promise.resolve(),
          });
        } catch (error) {
          // Production is not back: the watchdog stays armed and retries at its deadline; the lock keeps the journal for `recover`.
          throw new HaltUnwind(notRestored(error, "the canary run"));
        }
        await journalQuietly(s, { phase: "restored", production_serving_at: s.restored.servingAt.toISOString() });
        const downtime = (s.restored.servingAt.getTime() - (s.stoppedAt?.getTime() ?? Date.now())) / 1000;
        s.ctx.onProgress?.(`production serves again: ${downtime.toFixed(1)} s of downtime charged to the night of ${s.night}`);
        return { seconds: s.restored.seconds, downtime_seconds: downtime, already_serving: s.restored.alreadyServing };
      },
      event: "production_restored",
    },
  },
  {
    phase: "whisper_switching",
    when: switchesWhisperNow,
    says: (s) => `Whisper ${s.ctx.config.whisperSize} → ${s.candidate.whisperModelSize}`,
    journal: (s) => ({ whisper_at: s.candidate.whisperModelSize }),
    do: async (s) => {
      s.whisperAt = s.candidate.whisperModelSize;
      const { whisperStopCommand: stop, whisperStartCommand: start, whisperSize, whisperProcess } = s.ctx.config;
      // Before it acts: a watchdog firing mid-switch switches Whisper back before it restarts production.
      if (stop && start)
        await s.watchdog?.setWhisper({
          at: s.whisperAt,
          back_to: whisperSize,
          stop_command: stop,
          start_command: start,
          process_match: whisperProcess,
          // Its switch back waits for the Whisper's memory to be steady, as this run's own does.
          steady_timeout_seconds: s.ctx.config.whisperSteadyTimeoutSeconds,
          ...(s.ctx.whisperPollMs !== undefined ? { steady_poll_ms: s.ctx.whisperPollMs } : {}),
        });
      const seen = await switchWhisperSeen(s.ctx, s.ctx.config.whisperSize, s.candidate.whisperModelSize);
      s.whisperSeen = true;
      return seen;
    },
    event: "whisper_switched",
    undo: {
      phase: "whisper_restoring",
      do: async (s) => {
        try {
          const seen = await switchWhisperSeen(s.ctx, s.whisperAt, s.ctx.config.whisperSize);
          await journalQuietly(s, { whisper_at: undefined });
          await s.watchdog?.setWhisper(null).catch(() => undefined);
          return seen;
        } catch (error) {
          return `Whisper could not be switched back to ${s.ctx.config.whisperSize}: ${messageOf(error)}`;
        }
      },
      event: "whisper_switched",
    },
  },
  {
    phase: "canary_starting",
    says: (s) => `starting the canary on GPU ${s.ctx.config.productionGpuId} port ${s.ctx.config.canaryPort}`,
    do: async (s) => {
      await s.handle.checkFence();
      // Held until the journal and the watchdog know its group: a run killed at any instant leaves no
      // canary they cannot stop (one left behind would keep the GPU and production's restart would fail).
      s.canary = launch(s.ctx, s.candidate, s.ctx.config.productionGpuId, { held: true });
      await s.handle.journal({ canary_pgid: s.canary.pgid });
      await s.watchdog?.setCanary(s.canary.pgid);
      s.canary.release();
      return { port: s.ctx.config.canaryPort, gpu_index: s.ctx.config.productionGpuId, path: "quiesced", pgid: s.canary.pgid };
    },
    event: "canary_started",
    undo: {
      phase: "canary_stopping",
      do: async (s) => {
        const stopped = await stopCanary(s.canary);
        if (typeof stopped === "string") return stopped;
        await s.watchdog?.setCanary(null).catch(() => undefined);
        await journalQuietly(s, { canary_pgid: undefined });
        return stopped;
      },
      event: "canary_stopped",
    },
  },
  {
    phase: "testing",
    do: async (s) => {
      // Not switched, the Whisper on the card runs at the configured size: it verifies only a candidate of that size.
      // Asked as the test begins (the canary still loading) and read after it: the nvidia-smi call (a second or
      // more on some hosts) runs beside the canary's start instead of holding up the run inside the downtime,
      // and after this phase is journaled and said, so a run killed now has both naming the same phase.
      if (!switchesWhisperNow(s) && s.candidate.whisperModelSize === s.ctx.config.whisperSize)
        s.whisperCheck = whisperOnCard(s.ctx).then(
          (processes) => processes.length > 0,
          () => false,
        );
      s.verdict = await testAndJudge(
        s.ctx,
        { canary: s.canary, path: "quiesced", observed: s.observed, runId: s.runId, target: s.target },
        s.worst.restoreMeasured ? s.worst.restoreSeconds : null,
      );
      if (s.whisperCheck) s.whisperSeen = await s.whisperCheck;
      return undefined;
    },
  },
];

export interface QuiescedOutcome {
  verdict: TestVerdict;
  downtimeSeconds: number;
  whisperVerified: boolean;
  notes: string[];
}

/** Run the quiesced steps; any way out other than a verdict with production back and charged throws. */
export async function quiesced(
  ctx: RunContext,
  run: { candidate: Candidate; runId: string; handle: GpuLockHandle; night: string; worst: WorstCase; target: LoadTarget },
): Promise<QuiescedOutcome> {
  const state: QuiescedRun = {
    ...run,
    ctx,
    plan: restorePlanOf(ctx.config, ctx.env),
    observed: { baseline: null, shape: null },
    watchdog: null,
    stoppedAt: null,
    whisperAt: ctx.config.whisperSize,
    whisperSeen: false,
    whisperCheck: null,
    canary: null,
    verdict: null,
    restored: null,
    chargedSeconds: null,
    journalLost: null,
  };
  const { failure, notes } = await runSteps(quiescedSteps, state, stepIoOf(ctx, run.runId, run.handle));
  if (failure) throw failure;
  if (state.journalLost) throw state.journalLost;
  if (!state.verdict || !state.restored || !state.stoppedAt) throw new Error("the quiesced run ended without a verdict");
  const downtimeSeconds = (state.restored.servingAt.getTime() - state.stoppedAt.getTime()) / 1000;
  if (state.restored.seconds > ctx.config.restoreSlaSeconds)
    notes.unshift(
      `production took ${state.restored.seconds.toFixed(1)} s to serve again, over the ${ctx.config.restoreSlaSeconds} s restore SLA`,
    );
  return { verdict: state.verdict, downtimeSeconds, whisperVerified: state.whisperSeen, notes };
}
