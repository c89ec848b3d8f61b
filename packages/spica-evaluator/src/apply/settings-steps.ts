import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import {
  type RestorePlan,
  type Restored,
  keepInHistory,
  putBackSettings,
  restoreProduction,
  restoreUnlessServing,
  servedUtilization,
  writeVllmConfig,
} from "@gpu-canary/vllm-control";
import { sumOf } from "@gpu-canary/vllm-client";
import { productionServiceOf } from "../context.ts";
import type { Measured } from "../result.ts";
import { type Step, HaltUnwind } from "../canary/steps.ts";
import { type WatchedRun, journalQuietly, watchedSteps } from "../canary/watched-steps.ts";
import { type TestVerdict, testAndJudge } from "../canary/test-canary.ts";
import { notRestored } from "../canary/undoing.ts";

/** The settings a change puts into production's config file. */
export interface SettingsTarget {
  gpuMemoryUtilization: number;
  /** the history's name for it: the promotion's run, or `rollback` */
  name: string;
}

/** A verification that did not pass: production goes back to the settings it had. */
export class VerificationFailed extends GpuCanaryError {
  constructor(
    reason: string,
    readonly measured: Measured | null,
  ) {
    super("VERIFICATION_FAILED", reason, { kind: "fault" });
  }
}

/** One change of production's settings (`apply` or `rollback`) as it goes, for the undos. */
export interface SettingsRun extends WatchedRun {
  to: SettingsTarget;
  /** the new file's whole text: the operator's file as it is, with only the tuned key changed */
  text: string;
  /** what production served with before: the undo and the watchdog go back to it */
  plan: RestorePlan & { settings: NonNullable<RestorePlan["settings"]> };
  historyFile: string | null;
  stoppedAt: Date | null;
  /** production's start with the new file was issued: it may be loading when the rollback begins */
  startIssued: boolean;
  /** production served with the new settings (the verification then runs) */
  servingNewAt: Date | null;
  verdict: TestVerdict | null;
  /** the verification passed and what is applied was recorded: nothing is undone */
  kept: boolean;
  /** the rollback's own outage began (it stops the new production) */
  rollbackAt: Date | null;
  restored: Restored | null;
  /** runs once the verification passed, before anything is disarmed: records what is applied */
  keep: (s: SettingsRun) => Promise<void>;
}

/** The outage, never under-counted: the stop to the new start, and the rollback's own stop to production back. */
export function outageSeconds(s: Pick<SettingsRun, "stoppedAt" | "servingNewAt" | "rollbackAt" | "restored">): number | null {
  if (!s.stoppedAt) return null;
  const firstEnd = s.servingNewAt ?? s.restored?.servingAt ?? null;
  if (!firstEnd) return null;
  let seconds = (firstEnd.getTime() - s.stoppedAt.getTime()) / 1000;
  if (s.servingNewAt && s.rollbackAt && s.restored && !s.restored.alreadyServing)
    seconds += (s.restored.servingAt.getTime() - s.rollbackAt.getTime()) / 1000;
  return Math.max(0, seconds);
}

/**
 * A change of production's settings as steps (docs/operations.md, "Applying a promotion, rolling back"). The new config file is written,
 * production restarted and verified; every way out but a passed verification puts the previous file
 * back and restarts production with it — the undos here, the watchdog if this process dies.
 */
export const settingsSteps: Step<SettingsRun>[] = [
  ...watchedSteps<SettingsRun>(outageSeconds),
  {
    phase: "settings_writing",
    says: (s) => `writing ${s.plan.settings.configPath}: gpu-memory-utilization ${s.to.gpuMemoryUtilization}`,
    // Before the file changes: a crash from here on puts the previous file back (watchdog, recovery).
    journal: (s) => ({
      settings_restore: {
        config_path: s.plan.settings.configPath,
        restore_from: s.plan.settings.restoreFrom,
        gpu_memory_utilization: s.plan.settings.gpuMemoryUtilization,
      },
    }),
    do: async (s) => {
      s.historyFile = await keepInHistory(s.ctx.layout.vllmHistoryDir, new Date(), s.to.name, s.text);
      await writeVllmConfig(s.plan.settings.configPath, s.text);
      return undefined;
    },
    undo: {
      phase: "settings_restoring",
      do: async (s) => {
        // The restart's undo put it back already when production was stopped; this covers a failure before that.
        if (!s.kept) await putBackSettings(s.plan.settings);
        return undefined;
      },
    },
  },
  {
    phase: "quiescing",
    says: () => "stopping production to restart it with the new settings — the downtime starts now",
    journal: (s) => {
      s.stoppedAt = new Date();
      return { quiesce: "stop", production_stopped_at: s.stoppedAt.toISOString() };
    },
    do: async (s) => {
      await s.handle.checkFence();
      await productionServiceOf(s.ctx).stop(30_000);
      return { method: "stop", seconds: (Date.now() - (s.stoppedAt?.getTime() ?? Date.now())) / 1000 };
    },
    event: "production_stopped",
    undo: {
      phase: "rolling_back",
      says: (s) => (s.kept ? null : `putting production back on gpu-memory-utilization ${s.plan.settings.gpuMemoryUtilization}`),
      do: async (s) => {
        if (s.kept) return undefined;
        s.rollbackAt = new Date();
        // A start with the new file still loading would race the rollback's start (a second instance, or a failed bind).
        if (s.startIssued && s.servingNewAt === null)
          await productionServiceOf(s.ctx)
            .stop(30_000)
            .catch(() => undefined);
        try {
          s.restored = await restoreUnlessServing(s.plan, {
            starting: () => s.watchdog?.restoring().catch(() => undefined) ?? Promise.resolve(),
          });
        } catch (error) {
          throw new HaltUnwind(notRestored(error, "the settings change"));
        }
        await journalQuietly(s, { phase: "restored", production_serving_at: s.restored.servingAt.toISOString() });
        return { seconds: s.restored.seconds, by: "rollback", already_serving: s.restored.alreadyServing };
      },
      event: "production_restored",
    },
  },
  {
    phase: "starting",
    says: () => "starting production with the new settings",
    do: async (s) => {
      await s.watchdog?.restoring().catch(() => undefined);
      s.startIssued = true;
      let started;
      try {
        // The plan without its way back: this start is the new file's.
        started = await restoreProduction({ ...s.plan, settings: undefined }, s.ctx.signal);
      } catch (error) {
        if (s.ctx.signal?.aborted) throw error;
        // Not serving on the new file is the plainest failed verification (vLLM's own out-of-memory at start).
        throw new VerificationFailed(
          `production did not serve with gpu-memory-utilization ${s.to.gpuMemoryUtilization}: ${messageOf(error)}`,
          null,
        );
      }
      s.servingNewAt = started.servingAt;
      await journalQuietly(s, { production_serving_at: started.servingAt.toISOString() });
      return { seconds: started.seconds, by: "apply" };
    },
    event: "production_restored",
  },
  {
    phase: "verifying",
    says: () => "verifying production under load",
    do: async (s) => {
      const served = await servedUtilization(s.plan);
      if (served !== s.to.gpuMemoryUtilization)
        throw new VerificationFailed(
          `production serves gpu_memory_utilization ${served ?? "(not in its /metrics)"} after the restart, not ${s.to.gpuMemoryUtilization}: its command line may override ${s.plan.settings.configPath} (see \`gpu-canary doctor\`'s production_config)`,
          null,
        );
      const production = s.ctx.production;
      s.verdict = await testAndJudge(s.ctx, {
        canary: null,
        path: "apply",
        observed: s.observed,
        runId: s.runId,
        target: { intentKind: null, kvTokens: null },
        server: { client: production, baseUrl: s.ctx.config.vllmUrl.replace(/\/+$/, "") },
        // Its clients are back on it by now: the load adds only what their traffic lacks of the shape.
        alreadyInFlight: async () => sumOf(await production.metrics(3000).catch(() => []), "vllm:num_requests_running") ?? 0,
      });
      if (s.verdict.status !== "passed")
        throw new VerificationFailed(`verification ${s.verdict.status}: ${s.verdict.reason}`, s.verdict.measured);
      return undefined;
    },
  },
  {
    phase: "keeping",
    // The commit point, in this order: applied.json (a crash before the marker: the watchdog and
    // recovery undo the apply and put applied.json back), the watchdog gone (it would undo it), the
    // journal's marker (recovery then only charges). A signal from here on no longer undoes it.
    do: async (s) => {
      await s.keep(s);
      await s.watchdog?.disarm();
      await s.handle.journal({ settings_kept_at: new Date().toISOString() });
      s.kept = true;
      return undefined;
    },
  },
];
