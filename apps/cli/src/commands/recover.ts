import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { logLine, progressSinks, progressStyle } from "../progress.ts";
import { evaluatorFor, loadSettings } from "../settings.ts";

/** `recover`: finish what a crashed run left — production restored, downtime charged, lock released. */
export async function runRecover(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const { recover } = await import("@gpu-canary/spica-evaluator");
  const style = progressStyle(io, options);
  logLine(io, "recover", style, "started");
  const evaluator = await evaluatorFor(settings, io, { owner: "gpu-canary recover", progress: progressSinks(io, "recover", style) });
  const outcome = await recover(evaluator.context);
  logLine(io, "recover", style, `finished: ${outcome.action}`);
  answer(
    io,
    options,
    {
      action: outcome.action,
      run_id: outcome.runId,
      production_serving: outcome.productionServing,
      restored_by: outcome.restoredBy,
      charged_seconds: outcome.chargedSeconds,
      night: outcome.night,
      detail: outcome.detail,
    },
    () => `${outcome.detail}\nProduction: ${outcome.productionServing ? "serving" : "NOT serving — check it now"}`,
  );
  return 0;
}
