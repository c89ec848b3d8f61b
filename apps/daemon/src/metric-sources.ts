import type { Config } from "@gpu-canary/config";
import { windowAt } from "@gpu-canary/policy";
import { type RunContext, listPromotions } from "@gpu-canary/spica-evaluator";
import type { IntentStore } from "@gpu-canary/tuning";
import * as z from "zod";
import { createAuditEventCount, createAuditScan } from "./audit-count.ts";
import { type MetricSources, PROMOTION_STATES, type PromotionState } from "./metrics.ts";

/** Promotions written before promotions had a state are proposals: nothing has applied them. */
const promotionStateSchema = z.enum(PROMOTION_STATES).default("proposed");

function finite(value: unknown): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

/** A scrape waits this long at most for production's /health (Prometheus' scrape timeout is 10 s). */
const HEALTH_TIMEOUT_MS = 2000;

/** The daemon's metrics read from the host's state: the files every gpu-canary process shares, and production. */
export function metricSourcesFor(deps: {
  config: Config;
  context: Pick<RunContext, "budget" | "lock" | "production" | "layout">;
  store: IntentStore;
  promotionsDir: string;
  now: () => Date;
}): MetricSources {
  const { config, context: ctx } = deps;
  const chargedSeconds = createAuditScan({
    dir: ctx.layout.auditDir,
    event: "budget_charged",
    pick: (e) => (typeof e.seconds === "number" && Number.isFinite(e.seconds) ? e.seconds : null),
  });
  const canariesTested = createAuditScan({
    dir: ctx.layout.auditDir,
    event: "canary_tested",
    // test-canary.ts writes these: null where the canary did not measure them
    pick: (e) => {
      const ttft = finite(e.ttft_p95_ms);
      const itl = finite(e.itl_p95_ms);
      return {
        ttftP95Seconds: ttft === null ? null : ttft / 1000,
        itlP95Seconds: itl === null ? null : itl / 1000,
        preemptions: finite(e.preemptions),
      };
    },
  });
  const night = () => windowAt(config.maintenanceWindow, config.maintenanceTimeZone, deps.now());
  return {
    budget: async () => {
      const s = await ctx.budget.status(night().night);
      return { usedSeconds: s.secondsUsed, leftSeconds: s.secondsLeft };
    },
    windowOpen: () => night().open,
    lock: async () => {
      const s = await ctx.lock.status();
      if (s.state === "unreadable") return null;
      // As `gpu-canary recover` sees it: a dead holder that stopped production and was never charged.
      return { held: s.held, heldSeconds: s.ageSeconds, crashedRunAwaitsRecovery: s.stale && s.awaitsRecovery };
    },
    intentsPending: async () => (await deps.store.list("pending")).length,
    // From the audit trail, not counted in memory: a watchdog fires because its run's process died
    // (often this daemon), and its report is audited later by whichever process comes next — the
    // restarted daemon or `gpu-canary recover`. Only the trail sees every one, across restarts.
    watchdogFired: createAuditEventCount({ dir: ctx.layout.auditDir, event: "watchdog_fired" }),
    runsFinished: createAuditScan({
      dir: ctx.layout.auditDir,
      event: "run_finished",
      pick: (e) => (typeof e.mode === "string" && typeof e.status === "string" ? { mode: e.mode, verdict: e.status } : null),
    }),
    downtimeCharged: async () => {
      const charges = await chargedSeconds();
      return charges.reduce((sum, seconds) => sum + seconds, 0);
    },
    // Every restore with its seconds, as the worst case's estimate reads them (canary/worst-case.ts).
    restores: createAuditScan({
      dir: ctx.layout.auditDir,
      event: "production_restored",
      pick: (e) =>
        typeof e.seconds === "number" && Number.isFinite(e.seconds) && e.seconds >= 0
          ? { by: typeof e.by === "string" ? e.by : "canary", seconds: e.seconds }
          : null,
    }),
    lastCanary: async () => (await canariesTested()).at(-1) ?? null,
    restoreSlaSeconds: () => config.restoreSlaSeconds,
    // /health, not a completion: a scrape must not add load to production. A sleeping vLLM
    // (KLR_QUIESCE=sleep) answers /health yet serves nothing, so it is asked whether it sleeps.
    productionServing: async () => {
      const health = await ctx.production.health(HEALTH_TIMEOUT_MS);
      if (health.state !== "healthy") return false;
      if (config.quiesce !== "sleep") return true;
      return !(await ctx.production.isSleeping(HEALTH_TIMEOUT_MS).catch(() => false));
    },
    promotions: async () => {
      const listing = await listPromotions(deps.promotionsDir);
      const byState = Object.fromEntries(PROMOTION_STATES.map((s) => [s, 0])) as Record<PromotionState, number>;
      let unreadable = listing.unreadable.length;
      for (const promotion of listing.promotions) {
        const state = promotionStateSchema.safeParse(promotion.state);
        if (state.success) byState[state.data] += 1;
        else unreadable += 1;
      }
      return { byState, unreadable };
    },
  };
}
