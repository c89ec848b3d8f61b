import { type BudgetStatus, type BudgetStoreFor, createDowntimeBudget, fileBudgetStore, nightLabel, nightOf } from "@gpu-canary/policy";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, usageError } from "../output.ts";
import { type Settings, auditFeedFor, loadSettings, withFleet } from "../settings.ts";
import { parseDateOption } from "../time-input.ts";

function budgetFor(settings: Settings, io: Io, storeFor: BudgetStoreFor = fileBudgetStore(settings.layout.budgetFile)) {
  return createDowntimeBudget({
    storeFor,
    maxSeconds: settings.config.maxDowntimeSeconds,
    now: io.now,
  });
}

function nightFor(settings: Settings, io: Io, date: string | undefined): string {
  if (date !== undefined) return parseDateOption(date);
  return nightOf(settings.config.maintenanceWindow, settings.config.maintenanceTimeZone, io.now());
}

function statusJson(status: BudgetStatus, path: string) {
  return {
    date: status.date,
    seconds_used: status.secondsUsed,
    max_seconds: status.maxSeconds,
    seconds_left: status.secondsLeft,
    exhausted: status.exhausted,
    charges: status.charges,
    path,
  };
}

export async function runBudget(options: GlobalOptions & { date?: string }, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const date = nightFor(settings, io, options.date);
  const path = settings.layout.budgetFile(date);
  const status = await budgetFor(settings, io).status(date);
  answer(io, options, statusJson(status, path), () => {
    const last = status.charges.at(-1);
    return [
      `Downtime budget for the night of ${nightLabel(date)} (${status.recorded ? path : `no file yet: ${path}`})`,
      `Used: ${status.secondsUsed} s of ${status.maxSeconds} s; left: ${status.secondsLeft} s${status.exhausted ? " (exhausted: quiesced canaries wait for the next night)" : ""}`,
      `Charges: ${status.charges.length}${last ? ` (last: ${last.run_id}, ${last.seconds} s at ${last.at})` : ""}`,
    ].join("\n");
  });
  return 0;
}

export async function runBudgetReset(options: GlobalOptions & { date?: string; yes?: boolean; reason?: string }, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const date = nightFor(settings, io, options.date);
  if (!options.yes) {
    throw usageError(
      `budget reset sets the used downtime of the night of ${nightLabel(date)} to 0, allowing more production downtime that night; refusing without --yes`,
      `gpu-canary budget reset --yes --date ${date}`,
    );
  }
  const path = settings.layout.budgetFile(date);
  const reason = options.reason ?? "emergency reset from the command line";
  // In a fleet the database's copy is the one runs charge: reset there (and mirrored here), or the next charge would undo it.
  // Audited before the fleet's database closes, which copies this host's trail there.
  const { previousSecondsUsed, status } = await withFleet(settings, io, {}, async (fleet) => {
    const outcome = await budgetFor(settings, io, fleet?.stores.budget).reset(date, reason);
    const audit = await auditFeedFor(settings, io);
    await audit.append({ event: "budget_reset", date, previous_seconds_used: outcome.previousSecondsUsed, reason });
    return outcome;
  });
  answer(io, options, { ...statusJson(status, path), reset: true, previous_seconds_used: previousSecondsUsed }, () =>
    [
      `Reset the downtime budget for the night of ${nightLabel(date)} (${path})`,
      `Was: ${previousSecondsUsed === null ? "unreadable or missing" : `${previousSecondsUsed} s used`}; now: 0 s of ${status.maxSeconds} s used`,
    ].join("\n"),
  );
  return 0;
}
