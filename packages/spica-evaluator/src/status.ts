import { messageOf } from "@gpu-canary/errors";
import { cudaTotalMib } from "@gpu-canary/gpu-probe";
import { windowAt } from "@gpu-canary/policy";
import type { RunContext } from "./context.ts";

export type StatusPart<T> = T | { error: { code: string; message: string } };

const iso = (d: Date) => d.toISOString().replace(".000Z", "Z");

/** Each part answers on its own: one that cannot be read says why, and the rest still shows. */
async function part<T>(work: () => Promise<T>): Promise<StatusPart<T>> {
  try {
    return await work();
  } catch (error) {
    const code =
      typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : "UNAVAILABLE";
    return { error: { code, message: messageOf(error) } };
  }
}

export function isUnavailable(value: unknown): value is { error: { code: string; message: string } } {
  return typeof value === "object" && value !== null && "error" in value;
}

/** The status document: `gpu-canary status --json` and the daemon's GET /status. */
export async function statusDocument(ctx: Pick<RunContext, "config" | "now" | "budget" | "rate" | "lock" | "probe" | "production">) {
  const { config } = ctx;
  const state = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, ctx.now());
  const [budget, lock, rateLimits, gpus, production] = await Promise.all([
    part(async () => {
      const s = await ctx.budget.status(state.night);
      return { date: s.date, seconds_used: s.secondsUsed, max_seconds: s.maxSeconds, seconds_left: s.secondsLeft, exhausted: s.exhausted };
    }),
    part(async () => {
      const s = await ctx.lock.status();
      return { held: s.held, stale: s.stale, state: s.state, awaits_recovery: s.awaitsRecovery, holder: s.holder, reason: s.reason };
    }),
    part(async () =>
      (await ctx.rate.statusAll(config.subsystems)).map((d) => ({
        subsystem: d.subsystem,
        allowed: d.allowed,
        runs_in_window: d.runsInWindow,
        max_runs: d.maxRuns,
        next_allowed_at: iso(d.nextAllowedAt),
        reason: d.reason,
      })),
    ),
    part(async () =>
      (await ctx.probe.report()).gpus.map((g) => ({
        index: g.index,
        name: g.name,
        memory_total_mib: g.memoryTotalMib,
        cuda_total_mib: cudaTotalMib(g),
        memory_used_mib: g.memoryUsedMib,
        memory_free_mib: g.memoryFreeMib,
        processes: g.processes.map((p) => ({ pid: p.pid, name: p.name, used_memory_mib: p.usedMemoryMib })),
      })),
    ),
    part(async () => {
      const health = await ctx.production.health(2000);
      const version = health.state === "healthy" ? await ctx.production.version(2000).catch(() => null) : null;
      return { url: config.vllmUrl, health: health.state, version };
    }),
  ]);
  return {
    window: {
      open: state.open,
      opens_at: iso(state.opensAt),
      closes_at: iso(state.closesAt),
      timezone: config.maintenanceTimeZone,
      window: state.spec,
      seconds_left: state.secondsLeft,
      night: state.night,
    },
    budget,
    lock,
    rate_limits: rateLimits,
    mode: {
      canary_mode: config.canaryMode,
      quiesce: config.quiesce,
      spare_gpu: config.allowSpareGpu ? config.spareGpuId : null,
      production_gpu: config.productionGpuId,
    },
    gpus,
    production,
  };
}

export type StatusDocument = Awaited<ReturnType<typeof statusDocument>>;
