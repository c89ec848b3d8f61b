import { existsSync } from "node:fs";
import { type Log, type Seen, judge } from "./judge.ts";
import { Prober } from "@gpu-canary/testing";
import { type Proc, cliJson, exitText, statusOf } from "./processes.ts";
import { type Scenario, rowName } from "./scenarios.ts";
import { type RowSite, openSite } from "./site.ts";
import { fire, startRun, waitFor, within } from "./triggers.ts";

export const ROW_TIMEOUT_MS = 90_000;
/** Tries for a row whose phase was missed (a race) or that could not reach its signal (a setup fault). */
const ATTEMPTS = 3;

export interface RowResult {
  name: string;
  quiesce: string;
  phase: string;
  signal: string;
  exit: string;
  serving_again_after_s: number | null;
  recover_did: string;
  charged_s: number | null;
  probed_outage_s: number | null;
  diff_s: number | null;
  lock_after: string;
  run_finished: number | null;
  ok: boolean;
  /** KLR_RESTORE_SLA of the row's site */
  sla_s: number | null;
  /** the invariants this row broke */
  problems: string[];
  /** where the signal landed and what else was seen */
  notes: string[];
}

/** A try that did not test the row's phase: worth another on a fresh site. */
class NotReached extends Error {}

const round = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);

/** The run's id: the run the lock was first taken for on this fresh site. */
async function runIdOf(site: RowSite): Promise<string | null> {
  const acquired = await site.audit.query({ event: "lock_acquired" });
  return acquired.map((e) => e.run_id).find((id): id is string => typeof id === "string") ?? null;
}

async function triggerLag(site: RowSite, event: string, signalAt: number): Promise<string> {
  const ts = (await site.audit.query({ event }))[0]?.ts;
  return ts ? `signal ${signalAt - Date.parse(ts)} ms after ${event}` : `${event} not in the audit trail`;
}

/** Start the run and signal it at the row's moment; a run that never got there is NotReached. */
async function signalled(scenario: Scenario, site: RowSite, env: Record<string, string>, signal: AbortSignal, log: Log) {
  const run = await startRun(scenario, site, env, signal).catch((error: unknown) => {
    throw new NotReached(error instanceof Error ? error.message : String(error));
  });
  try {
    const signalAt = await fire(scenario, site, run, signal).catch((error: unknown) => {
      throw new NotReached(error instanceof Error ? error.message : String(error));
    });
    log.notes.push(`lock phase at the signal: ${site.lockPhase()}`);
    if (scenario.trigger.kind === "event") log.notes.push(await triggerLag(site, scenario.trigger.event, signalAt));
    const exit = await within(run.exited, signal, "the run to exit");
    // Only now: a start command the run spawned just before its SIGKILL still writes its line.
    const missed = scenario.missed?.(site, signalAt);
    if (missed) throw new NotReached(`phase missed: ${missed}`);
    return { run, signalAt, exit };
  } catch (error) {
    run.dispose();
    throw error;
  }
}

function printedBy(scenario: Scenario, run: Proc, log: Log): string | null {
  if (scenario.target === "daemon") {
    if (run.stderr().includes("ending the run in progress safely")) log.notes.push("gpu-canaryd: ending the run in progress safely");
    return null;
  }
  const status = statusOf(run.stdout());
  if (status) log.notes.push(`evaluate printed: ${status}`);
  return status;
}

/** One try: production probed throughout, the run started and signalled, recovery, the lock's state. */
async function drive(scenario: Scenario, site: RowSite, signal: AbortSignal, log: Log): Promise<Seen> {
  const env = { ...site.env, ...(await scenario.env(site)) };
  const prober = new Prober(site.sim.env.KLR_VLLM_URL ?? "");
  try {
    const started = Date.now();
    await waitFor(() => prober.servedSince(started), "the first probe to be served", { timeoutMs: 10_000, signal });
    const { run, signalAt, exit } = await signalled(scenario, site, env, signal, log);
    run.dispose();
    const printed = printedBy(scenario, run, log);
    if (scenario.signal === "SIGKILL") {
      const exitedAt = Date.now();
      await waitFor(() => existsSync(site.layout.watchdogReport) || prober.servedSince(exitedAt), "the watchdog's report or production", {
        timeoutMs: 60_000,
        signal,
      });
    }
    const recover = await cliJson(["recover"], env, 60_000);
    const recoveredAt = Date.now();
    // The SLA holds once the run and its recovery are over: production must serve within it.
    await waitFor(() => prober.servedSince(recoveredAt), "production to serve after recover", {
      timeoutMs: site.slaSeconds * 1000,
      signal,
    }).catch(() => log.problems.push(`production did not serve within ${site.slaSeconds} s after recover ended`));
    const lock = await cliJson(["lock", "status"], env, 30_000);
    const runId = await runIdOf(site);
    const events = runId ? await site.audit.query({ runId }) : [];
    return { exit, signalAt, recover, lock, runId, events, probes: await prober.stop(), printed };
  } finally {
    await prober.stop();
  }
}

function blank(scenario: Scenario, sla: number | null): RowResult {
  return {
    name: rowName(scenario),
    quiesce: scenario.quiesce,
    phase: scenario.phase,
    signal: scenario.signal,
    exit: "?",
    serving_again_after_s: null,
    recover_did: "?",
    charged_s: null,
    probed_outage_s: null,
    diff_s: null,
    lock_after: "?",
    run_finished: null,
    ok: false,
    sla_s: sla,
    problems: [],
    notes: [],
  };
}

function failed(scenario: Scenario, log: Log, reason: string, sla: number | null): RowResult {
  return { ...blank(scenario, sla), problems: [...log.problems, reason], notes: log.notes };
}

/** One try on a fresh simulated site, within the row's timeout; the site is cleaned up whatever happens. */
async function attempt(scenario: Scenario): Promise<RowResult | NotReached> {
  const signal = AbortSignal.timeout(ROW_TIMEOUT_MS);
  const log: Log = { problems: [], notes: [] };
  let site: RowSite | null = null;
  try {
    site = await openSite(scenario.quiesce).catch((error: unknown) => {
      throw new NotReached(`the simulated site did not start: ${error instanceof Error ? error.message : String(error)}`);
    });
    const seen = await drive(scenario, site, signal, log);
    const j = judge(scenario, site, seen, log);
    return {
      ...blank(scenario, site.slaSeconds),
      exit: exitText(seen.exit),
      serving_again_after_s: round(j.servingAgainS),
      recover_did: j.recoverDid,
      charged_s: round(j.chargedS),
      probed_outage_s: round(j.outageS),
      diff_s: round(Math.abs(j.chargedS - j.outageS)),
      lock_after: j.lockAfter,
      run_finished: j.runFinished,
      ok: log.problems.length === 0,
      problems: log.problems,
      notes: log.notes,
    };
  } catch (error) {
    if (error instanceof NotReached) return error;
    return failed(scenario, log, `row failed: ${error instanceof Error ? error.message : String(error)}`, site?.slaSeconds ?? null);
  } finally {
    await site?.cleanup().catch(() => undefined);
  }
}

/** The row, tried again on a fresh site while its phase was not reached; never throws. */
export async function runRow(scenario: Scenario): Promise<RowResult> {
  const misses: string[] = [];
  for (let i = 1; i <= ATTEMPTS; i += 1) {
    const result = await attempt(scenario);
    if (result instanceof NotReached) {
      misses.push(`try ${i}: ${result.message.slice(0, 300)}`);
      continue;
    }
    result.notes.unshift(...misses);
    return result;
  }
  return failed(scenario, { problems: [], notes: misses }, `phase not reached in ${ATTEMPTS} tries`, null);
}
