import type { AuditLine, AuditFeed } from "@gpu-canary/audit-feed";
import type { Config } from "@gpu-canary/config";
import { messageOf } from "@gpu-canary/errors";
import { windowAt } from "@gpu-canary/policy";
import {
  type Applied,
  type Promotion,
  type RunContext,
  type StatusDocument,
  listPromotions,
  loggedProductionStart,
  readApplied,
  statusDocument,
  worstCase,
} from "@gpu-canary/spica-evaluator";

/** What the page reads: the same sources as GET /status and GET /promotions. */
export interface PageSources {
  config: Config;
  context: RunContext;
  audit: AuditFeed;
  promotionsDir: string;
  now: () => Date;
  version: string;
  daemonState?: () => Record<string, unknown>;
}

export interface WindowRow {
  night: string;
  opensAt: Date;
  closesAt: Date;
  open: boolean;
}

/** One phase of a run: from the event before it to its own, in seconds. */
export interface Phase {
  name: string;
  seconds: number;
}

export interface RunRow {
  runId: string;
  at: Date;
  mode: string;
  status: string;
  reason: string;
  downtimeSeconds: number;
  phases: Phase[];
}

export interface PageData {
  now: Date;
  version: string;
  timeZone: string;
  status: StatusDocument & { daemon: Record<string, unknown> | null };
  windows: WindowRow[];
  /** a quiesced run's worst-case downtime (worst-case.ts), or why it is unknown */
  worst: { seconds: number; basis: string } | { error: string };
  applied: Applied | null | { error: string };
  /** the utilization production serves with now (its /metrics), for the promotions' "current" when nothing was applied */
  served: { util: number; whisper: string } | null;
  lastRestore: { at: Date; seconds: number | null } | null;
  runs: RunRow[];
  promotions: (Promotion & { file: string })[];
  unreadablePromotions: { file: string; reason: string }[];
  tail: AuditLine[];
}

const NIGHTS = 7;
const RUNS = 10;
const TAIL = 25;
const LOOKBACK_MS = 30 * 86_400_000;

/** The events that end a phase of a run, and the phase's name: quiesce → canary start → load → restore. */
const PHASE_ENDS: Record<string, string> = {
  production_stopped: "quiesce",
  whisper_switched: "whisper",
  canary_started: "canary start",
  canary_healthy: "canary ready",
  canary_tested: "load",
  canary_stopped: "canary stop",
  production_restored: "restore",
  run_finished: "finish",
};

/** The next nights' windows in the maintenance zone, starting with the one open now or next. */
export function nextWindows(config: Config, now: Date, nights = NIGHTS): WindowRow[] {
  const rows: WindowRow[] = [];
  let at = now;
  for (let i = 0; i < nights; i += 1) {
    const w = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, at);
    rows.push({ night: w.windowNight, opensAt: w.opensAt, closesAt: w.closesAt, open: w.open });
    at = w.closesAt;
  }
  return rows;
}

/** A run's phases from its audit events' timestamps (the first event starts the clock). */
export function phasesOf(events: AuditLine[]): Phase[] {
  const first = events[0];
  if (!first) return [];
  let from = Date.parse(first.ts);
  const phases: Phase[] = [];
  for (const e of events) {
    const name = PHASE_ENDS[e.event];
    if (!name) continue;
    const t = Date.parse(e.ts);
    phases.push({ name, seconds: Math.max(0, (t - from) / 1000) });
    from = t;
  }
  return phases;
}

/** The last runs, newest first: each run_finished with its run's events. */
export function runsOf(events: AuditLine[], count = RUNS): RunRow[] {
  const byRun = new Map<string, AuditLine[]>();
  for (const e of events) {
    if (!e.run_id) continue;
    const list = byRun.get(e.run_id) ?? [];
    list.push(e);
    byRun.set(e.run_id, list);
  }
  return events
    .filter((e) => e.event === "run_finished" && e.run_id)
    .slice(-count)
    .reverse()
    .map((finished) => {
      const own = byRun.get(finished.run_id ?? "") ?? [];
      const charged = own.filter((e) => e.event === "budget_charged").reduce((sum, e) => sum + Number(e.seconds ?? 0), 0);
      return {
        runId: finished.run_id ?? "",
        at: new Date(finished.ts),
        mode: typeof finished.mode === "string" ? finished.mode : "",
        status: typeof finished.status === "string" ? finished.status : "",
        reason: typeof finished.reason === "string" ? finished.reason : "",
        downtimeSeconds: Math.round(charged * 10) / 10,
        phases: phasesOf(own),
      };
    });
}

/** Everything the page shows, each part read by the function its JSON route uses; a part that fails says why. */
export async function pageData(s: PageSources): Promise<PageData> {
  const now = s.now();
  const [status, listing, applied, events, worst, served] = await Promise.all([
    statusDocument(s.context),
    listPromotions(s.promotionsDir),
    readApplied(s.context.layout.appliedFile).catch((error: unknown) => ({ error: messageOf(error) })),
    s.audit.query({ since: new Date(now.getTime() - LOOKBACK_MS) }),
    (async () => {
      // As doctor reads it: a stopped production restarts as it last started; a sleeping one only wakes.
      const logged = s.config.quiesce === "stop" ? await loggedProductionStart(s.config).catch(() => null) : null;
      const w = await worstCase(s.audit, s.config, now, logged);
      return { seconds: w.downtimeSeconds ?? w.totalSeconds, basis: w.basis };
    })().catch((error: unknown) => ({ error: messageOf(error) })),
    s.context.production
      .servedUtilization(2000)
      .then((util) => (util === null ? null : { util, whisper: s.config.whisperSize }))
      .catch(() => null),
  ]);
  const restored = events.filter((e) => e.event === "production_restored").at(-1);
  return {
    now,
    version: s.version,
    timeZone: s.config.maintenanceTimeZone,
    status: { ...status, daemon: s.daemonState?.() ?? null },
    windows: nextWindows(s.config, now),
    worst,
    applied,
    served,
    lastRestore: restored ? { at: new Date(restored.ts), seconds: typeof restored.seconds === "number" ? restored.seconds : null } : null,
    runs: runsOf(events),
    promotions: listing.promotions,
    unreadablePromotions: listing.unreadable,
    tail: events.slice(-TAIL),
  };
}
