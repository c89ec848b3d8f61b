import type { AuditLine } from "@gpu-canary/audit-feed";
import { type Probe, outageOf, servingAgainAfter } from "@gpu-canary/testing";
import { type CliAnswer, type Exit, asRecord, exitText } from "./processes.ts";
import type { Scenario } from "./scenarios.ts";
import type { RowSite } from "./site.ts";

const DIFF_LIMIT_S = 0.5;

/** What a row found wrong (problems: broken invariants) and what it saw on the way (notes). */
export interface Log {
  problems: string[];
  notes: string[];
}

/** What a row saw of its run once it was over. */
export interface Seen {
  exit: Exit | null;
  signalAt: number;
  recover: CliAnswer | null;
  lock: CliAnswer | null;
  runId: string | null;
  /** the audit trail's events of the run */
  events: AuditLine[];
  probes: Probe[];
  /** evaluate's stdout status ("passed", "error INTERRUPTED"), when it printed one */
  printed: string | null;
}

export interface Judged {
  servingAgainS: number | null;
  chargedS: number;
  outageS: number;
  runFinished: number;
  recoverDid: string;
  lockAfter: string;
}

const text = (value: unknown): string | null => (typeof value === "string" ? value : null);

function recoverText(answer: CliAnswer | null): string {
  if (!answer) return "not run";
  const json = answer.json ?? {};
  const error = asRecord(json.error);
  if (error) return `error ${text(error.code) ?? "?"} (exit ${exitText(answer.exit)})`;
  const by = text(json.restored_by);
  return `${text(json.action) ?? `exit ${exitText(answer.exit)}`}${by ? ` (${by})` : ""}`;
}

function lockText(answer: CliAnswer | null): string {
  const json = answer?.json;
  if (!json) return "unknown";
  const state = text(json.state) ?? `error ${text(asRecord(json.error)?.code) ?? "?"}`;
  return `${state}${json.awaits_recovery === true ? " (awaits recovery)" : ""}`;
}

/** SIGTERM ends evaluate with 128 + 15 and never a pass; gpu-canaryd stops safely with 0. */
function sigtermProblems(scenario: Scenario, seen: Seen): string[] {
  const wanted = scenario.target === "daemon" ? 0 : 143;
  const problems = seen.exit?.code === wanted ? [] : [`exit ${exitText(seen.exit)}, not ${wanted}`];
  if (seen.printed === "passed") problems.push('evaluate printed status "passed"');
  return problems;
}

/** The table's numbers for a row, with the invariants they break added to the log's problems. */
export function judge(scenario: Scenario, site: RowSite, seen: Seen, log: Log): Judged {
  const { problems, notes } = log;
  const charges = seen.events.filter((e) => e.event === "budget_charged");
  const charged = charges.reduce((sum, e) => sum + Number(e.seconds ?? 0), 0);
  const outage = outageOf(seen.probes, seen.signalAt);
  const serving = servingAgainAfter(seen.probes, seen.signalAt);
  const finished = seen.events.filter((e) => e.event === "run_finished").length;
  const lock = lockText(seen.lock);
  if (serving === null) problems.push("production was not serving at the end");
  else if (serving > site.slaSeconds)
    problems.push(`production served again ${serving.toFixed(1)} s after the signal, over the ${site.slaSeconds} s SLA`);
  if (outage.open) problems.push("the probed outage had not ended");
  if (Math.abs(charged - outage.seconds) > DIFF_LIMIT_S)
    problems.push(`charged ${charged.toFixed(2)} s vs probed outage ${outage.seconds.toFixed(2)} s`);
  if (text(seen.lock?.json?.state) !== "free") problems.push(`the lock is not free afterwards: ${lock}`);
  if (finished !== 1) problems.push(`${finished} run_finished events for run ${seen.runId ?? "?"}`);
  if (scenario.signal === "SIGTERM") problems.push(...sigtermProblems(scenario, seen));
  if (outage.downAtSignal !== null) notes.push(`production had been down ${outage.downAtSignal.toFixed(2)} s at the signal`);
  if (outage.laterOutages > 0) notes.push(`production went down again ${outage.laterOutages} time(s) after coming back`);
  const starts = site.starts().length;
  if (starts > 1) notes.push(`production's start command ran ${starts} times`);
  const night = charges[0]?.date;
  const used = typeof night === "string" ? site.budgetUsed(night) : null;
  if (used !== null && Math.abs(used - charged) > 0.001) notes.push(`the budget file says ${used.toFixed(2)} s used`);
  return {
    servingAgainS: serving,
    chargedS: charged,
    outageS: outage.seconds,
    runFinished: finished,
    recoverDid: recoverText(seen.recover),
    lockAfter: lock,
  };
}
