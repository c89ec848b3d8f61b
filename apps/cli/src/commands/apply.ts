import type { SettingsChangeOutcome } from "@gpu-canary/spica-evaluator";
import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { logLine, progressSinks, progressStyle } from "../progress.ts";
import { evaluatorFor, loadSettings, withFleet } from "../settings.ts";
import { parseFleetWait } from "./evaluate.ts";

export interface ChangeOptions extends GlobalOptions {
  wait?: string;
}

/** 0 applied and verified, 1 verification failed and rolled back, 3 refused by a gate. */
const exitOf = (outcome: SettingsChangeOutcome) => (outcome.status === "applied" ? 0 : outcome.status === "rolled_back" ? 1 : 3);

/** `apply <run_id>` and `rollback`: one settings change of production, gated, verified, rolled back when it fails. */
async function runChange(
  what: "apply" | "rollback",
  options: ChangeOptions,
  io: Io,
  change: (evaluator: Awaited<ReturnType<typeof evaluatorFor>>) => Promise<SettingsChangeOutcome>,
): Promise<number> {
  const waitSeconds = parseFleetWait(options.wait, `gpu-canary ${what} --wait 600${what === "apply" ? " RUN_ID" : ""}`);
  const settings = loadSettings(io);
  return withFleet(settings, io, { waitSeconds }, async (fleet) => {
    const style = progressStyle(io, options);
    const controller = new AbortController();
    const unsubscribe = io.onSignal((signal) => {
      io.stderr(`${signal} received: putting production back on its previous settings first\n`);
      controller.abort(signal);
    });
    try {
      logLine(io, what, style, "started");
      const evaluator = await evaluatorFor(settings, io, {
        owner: `gpu-canary ${what}`,
        signal: controller.signal,
        progress: progressSinks(io, what, style),
        fleet,
      });
      const outcome = await change(evaluator);
      logLine(io, what, style, `finished: ${outcome.status} (exit ${exitOf(outcome)})`);
      const { loadSummary } = await import("@gpu-canary/spica-evaluator");
      const load = loadSummary(outcome.measured);
      answer(
        io,
        options,
        {
          status: outcome.status,
          run_id: outcome.runId,
          from: outcome.from,
          to: outcome.to,
          reason: outcome.reason,
          gate: outcome.gate,
          downtime_seconds: outcome.downtimeSeconds,
          history_file: outcome.historyFile,
          applied: outcome.applied,
        },
        () =>
          [
            `Status: ${outcome.status}`,
            `Settings: gpu-memory-utilization ${outcome.from ?? "?"} → ${outcome.to}${outcome.status === "applied" ? "" : " (not applied)"}`,
            `Reason: ${outcome.reason}`,
            ...(load ? [`Load: ${load}`] : []),
            ...(outcome.downtimeSeconds !== null ? [`Downtime: ${outcome.downtimeSeconds.toFixed(1)} s charged`] : []),
            ...(outcome.applied
              ? [`Applied now: gpu-memory-utilization ${outcome.applied.vllm_memory_util ?? "?"} (${outcome.applied.file})`]
              : []),
            `Run: ${outcome.runId}`,
          ].join("\n"),
      );
      return exitOf(outcome);
    } finally {
      unsubscribe();
    }
  });
}

export function runApply(promotionRunId: string, options: ChangeOptions, io: Io): Promise<number> {
  return runChange("apply", options, io, (evaluator) => evaluator.apply(promotionRunId));
}

export function runRollback(options: ChangeOptions, io: Io): Promise<number> {
  return runChange("rollback", options, io, (evaluator) => evaluator.rollback());
}
