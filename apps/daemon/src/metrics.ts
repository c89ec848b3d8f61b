import { Counter, Gauge, Registry } from "prom-client";

export interface MetricSources {
  budget: () => Promise<{ usedSeconds: number; leftSeconds: number }>;
  windowOpen: () => boolean;
  lockHeld: () => Promise<boolean>;
  intentsPending: () => Promise<number>;
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
  const lastTtft = new Gauge({
    name: "gpu_canary_last_canary_ttft_p95_seconds",
    help: "TTFT p95 of the last canary test",
    registers: [registry],
  });
  const lastLatency = new Gauge({
    name: "gpu_canary_last_canary_latency_seconds",
    help: "Median end-to-end latency of the last canary test",
    registers: [registry],
  });
  new Gauge({
    name: "gpu_canary_downtime_used_seconds",
    help: "Production downtime charged tonight",
    registers: [registry],
    async collect() {
      this.set((await sources.budget()).usedSeconds);
    },
  });
  new Gauge({
    name: "gpu_canary_downtime_left_seconds",
    help: "Production downtime left tonight",
    registers: [registry],
    async collect() {
      this.set((await sources.budget()).leftSeconds);
    },
  });
  new Gauge({
    name: "gpu_canary_window_open",
    help: "1 while the maintenance window is open",
    registers: [registry],
    collect() {
      this.set(sources.windowOpen() ? 1 : 0);
    },
  });
  new Gauge({
    name: "gpu_canary_lock_held",
    help: "1 while the GPU maintenance lock is held",
    registers: [registry],
    async collect() {
      this.set((await sources.lockHeld()) ? 1 : 0);
    },
  });
  new Gauge({
    name: "gpu_canary_intents_pending",
    help: "Intents waiting to be worked",
    registers: [registry],
    async collect() {
      this.set(await sources.intentsPending());
    },
  });
  return { registry, runs, refusals, ooms, observerErrors, lastTtft, lastLatency };
}

export type Metrics = ReturnType<typeof createMetrics>;
