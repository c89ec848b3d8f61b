import { describeHolder } from "@gpu-canary/gpu-lock";
import { localTime, windowAt } from "@gpu-canary/policy";
import { findExecutable, portState, vllmExecutable } from "@gpu-canary/vllm-control";
import type { RunContext } from "../context.ts";
import type { WorstCase } from "./worst-case.ts";

export type GateName =
  | "subsystem"
  | "rate_limit"
  | "canary_command"
  | "canary_port"
  | "production_manager"
  | "window"
  | "budget"
  | "crashed_run"
  | "lock"
  | "fleet_slot";

export interface Refusal {
  gate: GateName;
  reason: string;
}

export type CanaryPath = "spare" | "quiesced" | "attached";
/** what a run's gates guard: a canary's path, or a change of production's settings (`apply`, `rollback`) */
export type GatedRun = CanaryPath | "apply";

/**
 * The safety gates, in the order docs/architecture.md ("The canary run") gives; the first that says no refuses the run (exit 3).
 * Asked once before the lock (to refuse early) and again under it (two runs must not both pass
 * a gate only one can afford). Returns the night whose budget a quiesced run charges.
 */
export async function checkGates(
  ctx: RunContext,
  run: {
    subsystem: string;
    path: GatedRun;
    worst: WorstCase;
    underLock?: boolean;
    /** production is down already (a rollback after its out-of-memory exit): bringing it back waits for no window, budget or rate */
    productionDown?: boolean;
    /** false: the rate limit is not asked (a rollback) */
    rateLimited?: boolean;
  },
): Promise<{ refusal: Refusal | null; night: string }> {
  const { config } = ctx;
  const now = ctx.now();
  const window = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, now);
  const night = window.night;
  const refuse = (gate: GateName, reason: string) => ({ refusal: { gate, reason }, night });
  // A settings change is its own subsystem (`apply`): its rate limit counts applies and rollbacks.
  if (run.path !== "apply" && !config.subsystems.includes(run.subsystem)) {
    return refuse("subsystem", `subsystem ${JSON.stringify(run.subsystem)} is not one of KLR_SUBSYSTEMS (${config.subsystems.join(", ")})`);
  }
  const rate = run.productionDown || run.rateLimited === false ? null : await ctx.rate.check(run.subsystem);
  if (rate && !rate.allowed) return refuse("rate_limit", rate.reason);
  if (run.path === "spare" || run.path === "quiesced") {
    const missing = canaryCommandProblem(ctx);
    if (missing) return refuse("canary_command", missing);
    const port = await portState(config.canaryPort);
    if (!port.free) return refuse("canary_port", `${port.description}; the canary could not bind it (KLR_CANARY_PORT)`);
  }
  if (run.path === "quiesced" || run.path === "apply") {
    // An apply restarts production whatever KLR_QUIESCE says: a woken vLLM keeps the settings it started with.
    const manager = managerProblem(ctx, run.path === "apply" ? "stop" : ctx.config.quiesce);
    if (manager) return refuse("production_manager", manager);
  }
  if ((run.path === "quiesced" || run.path === "apply") && !run.productionDown) {
    if (!window.open) {
      return refuse(
        "window",
        `the maintenance window ${window.spec} (${window.timeZone}) is closed; it opens at ${localTime(window.opensAt, window.timeZone)}`,
      );
    }
    if (window.secondsLeft < run.worst.totalSeconds) {
      return refuse(
        "window",
        `the maintenance window closes in ${Math.floor(window.secondsLeft)} s, less than the run's worst case of ${run.worst.totalSeconds} s (${run.worst.basis})`,
      );
    }
    const downtime = run.worst.downtimeSeconds ?? run.worst.totalSeconds;
    const afford = await ctx.budget.canAfford(night, downtime);
    if (!afford.ok) return refuse("budget", `${afford.reason}; the run's worst case is ${downtime} s of downtime (${run.worst.basis})`);
  }
  if (run.underLock) return { refusal: null, night };
  const lock = await ctx.lock.status();
  if (lock.state === "held")
    return refuse("lock", `the GPU lock is held by ${lock.holder ? describeHolder(lock.holder) : "another process"}`);
  if (lock.awaitsRecovery)
    return refuse("crashed_run", `a crashed quiesced run awaits recovery: ${lock.reason}; run \`gpu-canary recover\``);
  return { refusal: null, night };
}

/**
 * Whether the canary could be started at all: a missing vLLM found only at launch would cost
 * production a stop and a restart, a slot of the rate limit and the candidate a false failure.
 */
function canaryCommandProblem(ctx: RunContext): string | null {
  // The canary runs with this environment (launchCanary): its PATH is the one that counts.
  const { problem } = vllmExecutable(ctx.config.vllmCommand, { ...process.env, ...ctx.env });
  return problem === null ? null : `${problem}: the canary could not start`;
}

/** Whether production could be stopped and started again at all: never stop what cannot be restarted. */
function managerProblem(ctx: RunContext, quiesce: "stop" | "sleep"): string | null {
  const { config } = ctx;
  if (quiesce === "sleep") return null;
  if (config.serviceManager === "command") {
    const missing = [
      ...(config.productionStopCommand ? [] : ["KLR_PRODUCTION_STOP_COMMAND"]),
      ...(config.productionStartCommand ? [] : ["KLR_PRODUCTION_START_COMMAND"]),
    ];
    return missing.length === 0 ? null : `the command manager needs ${missing.join(" and ")}: production could not be restarted`;
  }
  return findExecutable("systemctl", { ...process.env, ...ctx.env }) === null
    ? "systemctl is not on PATH: production's unit could not be stopped and started again (KLR_SERVICE_MANAGER)"
    : null;
}
