import type { EvaluationResult } from "@gpu-canary/spica-evaluator";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * A promotion's state: proposed → applied | rolled_back | superseded | stale. Applying promotions
 * is still to come; the files written today carry no state and count as proposed.
 */
export const PROMOTION_STATES = ["proposed", "applied", "rolled_back", "superseded", "stale"] as const;
export type PromotionState = (typeof PROMOTION_STATES)[number];

/**
 * What the state metrics read at scrape time. `null` (or a throw) means "not known now": the
 * series is left out of the scrape rather than shown as a 0 that would read as a fact.
 */
export interface MetricSources {
  budget: () => Promise<{ usedSeconds: number; leftSeconds: number } | null>;
  windowOpen: () => boolean;
  /** the GPU lock: held (for how long, when its record says), and whether its holder is a crashed run that only recovery may finish */
  lock: () => Promise<{ held: boolean; heldSeconds: number | null; crashedRunAwaitsRecovery: boolean } | null>;
  intentsPending: () => Promise<number | null>;
  /** every `watchdog_fired` event in the audit trail, whoever wrote it */
  watchdogFired: () => Promise<number | null>;
  productionServing: () => Promise<boolean | null>;
  promotions: () => Promise<{ byState: Record<PromotionState, number>; unreadable: number } | null>;
  /** every `run_finished` event in the audit trail: the run's mode and verdict, whichever process ran it */
  runsFinished: () => Promise<{ mode: string; verdict: string }[] | null>;
  /** the seconds of every `budget_charged` event in the audit trail */
  downtimeCharged: () => Promise<number | null>;
  /** every `production_restored` event with its seconds, oldest first; `by` what restored it (a canary run's undo when the event does not say) */
  restores: () => Promise<{ by: string; seconds: number }[] | null>;
  /** the evidence of the last canary tested (the audit trail's last `canary_tested` event), whichever process ran it */
  lastCanary: () => Promise<{ ttftP95Seconds: number | null; itlP95Seconds: number | null; preemptions: number | null } | null>;
  /** KLR_RESTORE_SLA */
  restoreSlaSeconds: () => number;
}

/** Run lengths from a refused run (well under a second) to a canary that uses its whole timeout. */
const RUN_SECONDS_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600];

/** Restores from a vLLM that was still serving (well under a second) to a large model's cold load; 15 is KLR_RESTORE_SLA's default. */
const RESTORE_SECONDS_BUCKETS = [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600];

async function known<T>(read: () => Promise<T | null>): Promise<T | null> {
  try {
    return await read();
  } catch {
    // A source that cannot be read now (a state file mid-repair, vLLM hung) leaves its series
    // out; `gpu-canary status` and `doctor` say why. One bad source never fails the scrape.
    return null;
  }
}

/** A gauge without labels that is left out of the scrape while its value is unknown. */
function optionalGauge(registry: Registry, name: string, help: string, read?: () => Promise<number | null>) {
  const gauge = new Gauge({
    name,
    help,
    registers: [registry],
    ...(read
      ? {
          async collect() {
            const value = await known(read);
            if (value === null || !Number.isFinite(value)) this.remove({});
            else this.set(value);
          },
        }
      : {}),
  });
  gauge.remove({});
  return gauge;
}

/** gpu-canaryd's Prometheus metrics, all prefixed gpu_canary_; the state ones are read at scrape time. */
export function createMetrics(sources: MetricSources) {
  const registry = new Registry();
  const runs = new Counter({
    name: "gpu_canary_runs_total",
    help: "Evaluations run by the daemon, by result",
    labelNames: ["result"],
    registers: [registry],
  });
  const runDuration = new Histogram({
    name: "gpu_canary_run_duration_seconds",
    help: "How long the daemon's evaluations took, by result",
    labelNames: ["result"],
    buckets: RUN_SECONDS_BUCKETS,
    registers: [registry],
  });
  const refusals = new Counter({
    name: "gpu_canary_refusals_total",
    help: "Runs refused, by the gate that refused",
    labelNames: ["gate"],
    registers: [registry],
  });
  const ooms = new Counter({
    name: "gpu_canary_oom_events_total",
    help: "Out-of-memory events seen in vLLM's log, by kind",
    labelNames: ["kind"],
    registers: [registry],
  });
  const observerErrors = new Counter({
    name: "gpu_canary_observer_errors_total",
    help: "Problems following vLLM's log",
    registers: [registry],
  });
  new Counter({
    name: "gpu_canary_watchdog_fired_total",
    help: "Restore watchdogs that fired, as recorded in the audit trail (watchdog_fired events)",
    registers: [registry],
    async collect() {
      const count = await known(sources.watchdogFired);
      this.reset();
      if (count === null) this.remove({});
      else this.inc(count);
    },
  });
  new Counter({
    name: "gpu_canary_runs_finished_total",
    help: "Runs finished by any gpu-canary process (daemon or CLI), as recorded in the audit trail (run_finished events), by mode and verdict",
    labelNames: ["mode", "verdict"],
    registers: [registry],
    async collect() {
      const runs = await known(sources.runsFinished);
      this.reset();
      for (const run of runs ?? []) this.inc({ mode: run.mode, verdict: run.verdict });
    },
  });
  new Counter({
    name: "gpu_canary_downtime_charged_seconds_total",
    help: "Production downtime charged to the budget, all nights together, as recorded in the audit trail (budget_charged events)",
    registers: [registry],
    async collect() {
      const seconds = await known(sources.downtimeCharged);
      this.reset();
      if (seconds === null) this.remove({});
      else this.inc(seconds);
    },
  });
  new Histogram({
    name: "gpu_canary_restore_duration_seconds",
    help: "How long production took to serve again, as recorded in the audit trail (production_restored events), by what restored it",
    labelNames: ["by"],
    buckets: RESTORE_SECONDS_BUCKETS,
    registers: [registry],
    async collect() {
      const restores = await known(sources.restores);
      this.reset();
      for (const restore of restores ?? []) this.observe({ by: restore.by }, restore.seconds);
    },
  });
  optionalGauge(
    registry,
    "gpu_canary_last_restore_seconds",
    "How long the last restore recorded in the audit trail took (compare gpu_canary_restore_sla_seconds)",
    async () => (await sources.restores())?.at(-1)?.seconds ?? null,
  );
  optionalGauge(registry, "gpu_canary_restore_sla_seconds", "KLR_RESTORE_SLA: seconds within which production must serve again", () =>
    Promise.resolve(sources.restoreSlaSeconds()),
  );
  optionalGauge(
    registry,
    "gpu_canary_last_canary_ttft_p95_seconds",
    "TTFT p95 of the last canary test (the audit trail's last canary_tested event, whoever ran it)",
    async () => (await sources.lastCanary())?.ttftP95Seconds ?? null,
  );
  optionalGauge(
    registry,
    "gpu_canary_last_canary_itl_p95_seconds",
    "ITL (inter-token latency) p95 of the last canary test (the audit trail's last canary_tested event)",
    async () => (await sources.lastCanary())?.itlP95Seconds ?? null,
  );
  optionalGauge(
    registry,
    "gpu_canary_last_canary_preemptions",
    "Preemptions vLLM counted during the last canary's load (the audit trail's last canary_tested event)",
    async () => (await sources.lastCanary())?.preemptions ?? null,
  );
  const lastLatency = optionalGauge(
    registry,
    "gpu_canary_last_canary_latency_seconds",
    "Median end-to-end latency of the last canary test",
  );
  optionalGauge(
    registry,
    "gpu_canary_downtime_used_seconds",
    "Production downtime charged to the night in effect (the open window's, else the last one's)",
    async () => {
      return (await sources.budget())?.usedSeconds ?? null;
    },
  );
  optionalGauge(registry, "gpu_canary_downtime_left_seconds", "Production downtime left to the night in effect", async () => {
    return (await sources.budget())?.leftSeconds ?? null;
  });
  optionalGauge(registry, "gpu_canary_window_open", "1 while the maintenance window is open", () =>
    Promise.resolve(sources.windowOpen() ? 1 : 0),
  );
  optionalGauge(registry, "gpu_canary_lock_held", "1 while the GPU maintenance lock is held", async () => {
    const lock = await sources.lock();
    return lock === null ? null : Number(lock.held);
  });
  optionalGauge(
    registry,
    "gpu_canary_lock_held_seconds",
    "How long the GPU maintenance lock has been held (since its record's acquired_at); absent while it is free",
    async () => {
      const lock = await sources.lock();
      return lock?.held ? lock.heldSeconds : null;
    },
  );
  optionalGauge(
    registry,
    "gpu_canary_crashed_run_awaiting_recovery",
    "1 while a run that died after stopping production holds the GPU lock: `gpu-canary recover` finishes it",
    async () => {
      const lock = await sources.lock();
      return lock === null ? null : Number(lock.crashedRunAwaitsRecovery);
    },
  );
  optionalGauge(registry, "gpu_canary_production_serving", "1 while production vLLM is healthy and awake", async () => {
    const serving = await sources.productionServing();
    return serving === null ? null : Number(serving);
  });
  optionalGauge(registry, "gpu_canary_intents_pending", "Intents waiting to be worked", sources.intentsPending);
  new Gauge({
    name: "gpu_canary_promotions",
    help: "Promotions in the promotions folder, by state",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const listing = await known(sources.promotions);
      this.reset();
      if (listing) for (const state of PROMOTION_STATES) this.set({ state }, listing.byState[state]);
    },
  });
  optionalGauge(registry, "gpu_canary_promotion_files_unreadable", "Files in the promotions folder that are not promotions", async () => {
    return (await sources.promotions())?.unreadable ?? null;
  });

  /** What a finished evaluation of the daemon's adds: its count, its length, the gate that refused it, the canary's latency. */
  const recordRun = (result: EvaluationResult) => {
    runs.inc({ result: result.status });
    const seconds = (Date.parse(result.finishedAt) - Date.parse(result.startedAt)) / 1000;
    if (Number.isFinite(seconds) && seconds >= 0) runDuration.observe({ result: result.status }, seconds);
    if (result.gate) refusals.inc({ gate: result.gate });
    if (result.measured?.e2eP50Ms != null) lastLatency.set(result.measured.e2eP50Ms / 1000);
  };

  return { registry, ooms, observerErrors, recordRun };
}

export type Metrics = ReturnType<typeof createMetrics>;
