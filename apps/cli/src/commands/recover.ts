import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { logLine, progressSinks, progressStyle } from "../progress.ts";
import { evaluatorFor, loadSettings, withFleet } from "../settings.ts";

/** `recover`: finish what a crashed run left — production restored, downtime charged, lock released. */
export async function runRecover(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const { recover } = await import("@gpu-canary/spica-evaluator");
  const style = progressStyle(io, options);
  logLine(io, "recover", style, "started");
  // With KLR_STATE_URL the crashed run's downtime is charged in the fleet's database, and this host's slot released.
  const outcome = await withFleet(settings, io, {}, async (fleet) => {
    const evaluator = await evaluatorFor(settings, io, {
      owner: "gpu-canary recover",
      progress: progressSinks(io, "recover", style),
      fleet,
    });
    return recover(evaluator.context);
  });
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
