import { messageOf } from "@gpu-canary/errors";
import type { GpuLockHandle } from "@gpu-canary/gpu-lock";
import type { RestorePlan, Watchdog } from "@gpu-canary/vllm-control";
import type { RunContext } from "../context.ts";
import type { ProductionObserved } from "./production-observed.ts";
import { armRunWatchdog } from "./run-lock.ts";
import type { JournalPatch, Step } from "./steps.ts";
import { observeProductionOf } from "./test-canary.ts";
import { chargeOutage } from "./undoing.ts";
import type { WorstCase } from "./worst-case.ts";

/** What every run that stops production (a quiesced canary, a change of settings) keeps for its first steps and their undo. */
export interface WatchedRun {
  ctx: RunContext;
  runId: string;
  handle: GpuLockHandle;
  night: string;
  worst: WorstCase;
  plan: RestorePlan;
  /** production's latency and traffic, read before it stops */
  observed: ProductionObserved;
  watchdog: Watchdog | null;
  /** the downtime charged, once it is */
  chargedSeconds: number | null;
  /** a journal write that failed while undoing (the lock was taken away): reported once production is back */
  journalLost: Error | null;
}

/** While undoing, a journal write that fails (the lock was force-released) must not stop the repair. */
export const journalQuietly = (s: Pick<WatchedRun, "handle" | "journalLost">, patch: JournalPatch) =>
  s.handle.journal(patch).catch((error: unknown) => {
    s.journalLost ??= error instanceof Error ? error : new Error(messageOf(error));
  });

/**
 * The first two steps of such a run: production's baseline, then the watchdog. Their undo is the
 * last of the way back: the charge (once `outageSeconds` knows it), then the watchdog has nothing left to do.
 */
export function watchedSteps<S extends WatchedRun>(outageSeconds: (s: S) => number | null): Step<S>[] {
  return [
    {
      phase: "baseline",
      do: async (s) => {
        s.observed = await observeProductionOf(s.ctx);
        return undefined;
      },
    },
    {
      phase: "watchdog_armed",
      do: async (s) => {
        s.watchdog = await armRunWatchdog(s.ctx, s);
        return undefined;
      },
      undo: {
        phase: "disarming",
        do: async (s) => {
          try {
            const seconds = outageSeconds(s);
            if (seconds !== null) {
              await chargeOutage(s.ctx, { night: s.night, runId: s.runId, seconds });
              s.chargedSeconds = seconds;
              await journalQuietly(s, { phase: "charged", charged_at: new Date().toISOString() });
            }
          } finally {
            await s.watchdog?.disarm();
          }
          return undefined;
        },
      },
    },
  ];
}
