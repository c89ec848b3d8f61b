import { localTime, nightLabel } from "@gpu-canary/policy";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, humanDuration } from "../output.ts";
import { auditFeedFor, hostEnv, loadSettings } from "../settings.ts";

export async function runStatus(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  // The parts of a run's context a status reads, without a run's code (cold start: README, Benchmarks).
  const { statusContextOf, statusDocument, isUnavailable: failed } = await import("@gpu-canary/spica-evaluator");
  const context = statusContextOf({
    config: settings.config,
    layout: settings.layout,
    now: io.now,
    audit: await auditFeedFor(settings, io),
    env: hostEnv(io),
    owner: "gpu-canary status",
  });
  const doc = await statusDocument(context);
  answer(io, options, doc, () => {
    const lines: string[] = [];
    const w = doc.window;
    lines.push(
      `Window:      ${w.window} ${w.timezone} ${w.open ? `OPEN, closes in ${humanDuration(w.seconds_left)}` : `closed, opens ${localTime(new Date(w.opens_at), w.timezone)}`}`,
    );
    const b = doc.budget;
    lines.push(
      failed(b)
        ? `Budget:      unavailable: ${b.error.message}`
        : `Budget:      ${b.seconds_used} s used of ${b.max_seconds} s, night of ${nightLabel(b.date)} (${b.seconds_left} s left)`,
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
