import { windowAt } from "@gpu-canary/policy";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, humanDuration, isoUtc } from "../output.ts";
import { type Settings, gpuLockFor, hostEnv, loadSettings } from "../settings.ts";

type Part<T> = T | { error: { code: string; message: string } };

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** Each part of `status` answers on its own: one that cannot be read says why, and the rest still shows. */
async function part<T>(work: () => Promise<T>): Promise<Part<T>> {
  try {
    return await work();
  } catch (error) {
    const code =
      typeof error === "object" && error !== null && "code" in error && typeof error.code === "string" ? error.code : "UNAVAILABLE";
    return { error: { code, message: message(error) } };
  }
}

const failed = (value: unknown): value is { error: { message: string } } => typeof value === "object" && value !== null && "error" in value;

/** The status document (`gpu-canary status --json`, the daemon's GET /status). */
export async function statusDocument(settings: Settings, io: Io) {
  const { config, layout } = settings;
  const now = io.now();
  const state = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, now);
  const window = {
    open: state.open,
    opens_at: isoUtc(state.opensAt),
    closes_at: isoUtc(state.closesAt),
    timezone: config.maintenanceTimeZone,
    window: state.spec,
    seconds_left: state.secondsLeft,
    night: state.night,
  };
  const { policyOf, productionClient } = await import("@gpu-canary/spica-evaluator");
  const { budget, rate } = policyOf(config, layout, io.now);
  const [budgetPart, lockPart, ratePart, gpusPart, productionPart] = await Promise.all([
    part(async () => {
      const s = await budget.status(state.night);
      return { date: s.date, seconds_used: s.secondsUsed, max_seconds: s.maxSeconds, seconds_left: s.secondsLeft, exhausted: s.exhausted };
    }),
    part(async () => {
      const s = await (await gpuLockFor(settings, io, "gpu-canary status")).status();
      return { held: s.held, stale: s.stale, state: s.state, awaits_recovery: s.awaitsRecovery, holder: s.holder, reason: s.reason };
    }),
    part(async () =>
      (await rate.statusAll(config.subsystems)).map((d) => ({
        subsystem: d.subsystem,
        allowed: d.allowed,
        runs_in_window: d.runsInWindow,
        max_runs: d.maxRuns,
        next_allowed_at: isoUtc(d.nextAllowedAt),
        reason: d.reason,
      })),
    ),
    part(async () => {
      const { createGpuProbe, cudaTotalMib } = await import("@gpu-canary/gpu-probe");
      const report = await createGpuProbe({ executable: config.nvidiaSmi, env: hostEnv(io) }).report();
      return report.gpus.map((g) => ({
        index: g.index,
        name: g.name,
        memory_total_mib: g.memoryTotalMib,
        cuda_total_mib: cudaTotalMib(g),
        memory_used_mib: g.memoryUsedMib,
        memory_free_mib: g.memoryFreeMib,
        processes: g.processes.map((p) => ({ pid: p.pid, name: p.name, used_memory_mib: p.usedMemoryMib })),
      }));
    }),
    part(async () => {
      const client = productionClient(config);
      const health = await client.health(2000);
      const version = health.state === "healthy" ? await client.version(2000).catch(() => null) : null;
      return { url: config.vllmUrl, health: health.state, version };
    }),
  ]);
  return {
    window,
    budget: budgetPart,
    lock: lockPart,
    rate_limits: ratePart,
    mode: {
      canary_mode: config.canaryMode,
      quiesce: config.quiesce,
      spare_gpu: config.allowSpareGpu ? config.spareGpuId : null,
      production_gpu: config.productionGpuId,
    },
    gpus: gpusPart,
    production: productionPart,
  };
}

export async function runStatus(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const doc = await statusDocument(settings, io);
  answer(io, options, doc, () => {
    const lines: string[] = [];
    const w = doc.window;
    lines.push(
      `Window:      ${w.window} ${w.timezone} ${w.open ? `OPEN, closes in ${humanDuration(w.seconds_left)}` : `closed, opens ${w.opens_at}`}`,
    );
    const b = doc.budget;
    lines.push(
      failed(b)
        ? `Budget:      unavailable: ${b.error.message}`
        : `Budget:      ${b.seconds_used} s used of ${b.max_seconds} s tonight (${b.seconds_left} s left)`,
    );
    const l = doc.lock;
    lines.push(
      failed(l)
        ? `Lock:        unavailable: ${l.error.message}`
        : `Lock:        ${l.state}${l.holder ? ` (PID ${l.holder.pid}, ${l.holder.owner})` : ""}${l.awaits_recovery ? " — a crashed run awaits `gpu-canary recover`" : ""}`,
    );
    const r = doc.rate_limits;
    if (failed(r)) lines.push(`Rate limits: unavailable: ${r.error.message}`);
    else for (const d of r) lines.push(`Rate limits: ${d.subsystem}: ${d.allowed ? "a run is allowed" : "no run allowed"} — ${d.reason}`);
    lines.push(
      `Mode:        ${doc.mode.canary_mode}; quiesce ${doc.mode.quiesce}; ${doc.mode.spare_gpu === null ? "no spare GPU" : `spare GPU ${doc.mode.spare_gpu}`}`,
    );
    const g = doc.gpus;
    if (failed(g)) lines.push(`GPUs:        unavailable: ${g.error.message}`);
    else
      for (const gpu of g)
        lines.push(
          `GPU ${gpu.index}:       ${gpu.name}, ${gpu.memory_used_mib ?? "?"} of ${gpu.memory_total_mib ?? "?"} MiB used, ${gpu.processes.length} processes`,
        );
    const p = doc.production;
    lines.push(
      failed(p)
        ? `Production:  unavailable: ${p.error.message}`
        : `Production:  ${p.url} ${p.health}${p.version ? `, vLLM ${p.version}` : ""}`,
    );
    return lines.join("\n");
  });
  return 0;
}
