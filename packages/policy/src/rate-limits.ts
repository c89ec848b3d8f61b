import { GpuCanaryError } from "@gpu-canary/errors";
import type { ReadResult } from "@gpu-canary/state-file";
import * as z from "zod";
import { type JsonStore, createJsonFileStore } from "./json-store.ts";
import { localTime } from "./local-time.ts";

const run = z.object({ run_id: z.string().min(1), at: z.iso.datetime({ offset: true }) });

export const rateLimitsFileSchema = z.looseObject({
  subsystems: z.record(z.string(), z.looseObject({ runs: z.array(run) })),
});
export type RateLimitsFile = z.infer<typeof rateLimitsFileSchema>;

export interface RateLimitRule {
  maxRuns: number;
  windowHours: number;
  cooldownHours: number;
}

export interface RateDecision {
  subsystem: string;
  allowed: boolean;
  /** one sentence: why not, or how many runs are left */
  reason: string;
  /** the earliest instant the next run is allowed (now when allowed) */
  nextAllowedAt: Date;
  runsInWindow: number;
  maxRuns: number;
  lastRunAt: Date | null;
}

export class RateLimitsUnreadableError extends GpuCanaryError {
  constructor(location: string, reason: string) {
    super("RATE_LIMITS_UNREADABLE", `the rate-limit record ${location} ${reason}`, {
      kind: "fault",
      hint: `canary runs stay refused until it is repaired: fix the JSON by hand, or move the file aside to start counting anew (that allows runs sooner than the limits would)`,
      details: { path: location },
    });
  }
}

export function fileRateLimitStore(path: string): JsonStore<RateLimitsFile> {
  return createJsonFileStore(path, rateLimitsFileSchema, { hint: "fix the JSON by hand, or move the file aside" });
}

const HOUR = 3600_000;

/**
 * The pure rule. The reason gives times in `zone` (the maintenance zone) when one is named —
 * people read it; the decision's fields stay instants. Times are UTC instants; a run recorded "in the future" (the clock stepped
 * back since) still counts in the window and still starts the cooldown, so stepping the
 * clock back never grants an extra run.
 */
export function decide(rule: RateLimitRule, subsystem: string, runs: readonly { at: string }[], now: Date, zone?: string): RateDecision {
  const shown = (instant: number) => (zone === undefined ? new Date(instant).toISOString() : localTime(new Date(instant), zone));
  const t = now.getTime();
  const times = runs.map((r) => Date.parse(r.at)).sort((a, b) => a - b);
  const windowMs = rule.windowHours * HOUR;
  const inWindow = times.filter((at) => at > t - windowMs);
  const last = times.at(-1) ?? null;
  const cooldownEnds = last === null ? t : last + rule.cooldownHours * HOUR;
  // When full, the next slot opens when enough of the oldest runs leave the window.
  const oldestToLeave = inWindow.length >= rule.maxRuns ? inWindow[inWindow.length - rule.maxRuns] : undefined;
  const windowFrees = oldestToLeave === undefined ? t : oldestToLeave + windowMs;
  const next = Math.max(t, cooldownEnds, windowFrees);
  const allowed = next <= t;
  const base = {
    subsystem,
    allowed,
    nextAllowedAt: new Date(next),
    runsInWindow: inWindow.length,
    maxRuns: rule.maxRuns,
    lastRunAt: last === null ? null : new Date(last),
  };
  if (allowed) {
    return { ...base, reason: `${inWindow.length} of ${rule.maxRuns} runs used in the last ${rule.windowHours} h` };
  }
  const reason =
    windowFrees > t
      ? `${subsystem} already ran ${inWindow.length} times in the last ${rule.windowHours} h (at most ${rule.maxRuns}); next run allowed at ${shown(next)}`
      : `${subsystem} last ran at ${shown(last ?? t)}; the ${rule.cooldownHours} h cooldown ends at ${shown(next)}`;
  return { ...base, reason };
}

export interface RateLimiter {
  check(subsystem: string): Promise<RateDecision>;
  /** check and record in one atomic step, so concurrent runs never exceed the limit */
  admit(subsystem: string, runId: string): Promise<RateDecision>;
  statusAll(subsystems: readonly string[]): Promise<RateDecision[]>;
}

export interface RateLimiterDeps {
  store: JsonStore<RateLimitsFile>;
  rule: RateLimitRule;
  now?: () => Date;
  /** the maintenance zone: reasons give times in it */
  timeZone?: string;
}

export function createRateLimiter(deps: RateLimiterDeps): RateLimiter {
  const now = deps.now ?? (() => new Date());
  const keepMs = Math.max(deps.rule.windowHours, deps.rule.cooldownHours) * HOUR;

  const readable = (current: ReadResult<RateLimitsFile>): RateLimitsFile => {
    if (current.status === "unreadable") throw new RateLimitsUnreadableError(deps.store.location, current.error.reason);
    return current.status === "ok" ? current.value : { subsystems: {} };
  };

  const check = async (subsystem: string): Promise<RateDecision> => {
    const file = readable(await deps.store.read());
    return decide(deps.rule, subsystem, file.subsystems[subsystem]?.runs ?? [], now(), deps.timeZone);
  };

  return {
    check,
    admit: (subsystem, runId) =>
      deps.store.update((current) => {
        const file = readable(current);
        const at = now();
        const runs = file.subsystems[subsystem]?.runs ?? [];
        const decision = decide(deps.rule, subsystem, runs, at, deps.timeZone);
        if (!decision.allowed) return { answer: decision };
        // Old runs no longer matter to either rule; runs "in the future" are kept.
        const kept = runs.filter((r) => Date.parse(r.at) > at.getTime() - keepMs);
        const next: RateLimitsFile = {
          ...file,
          subsystems: {
            ...file.subsystems,
            [subsystem]: { ...file.subsystems[subsystem], runs: [...kept, { run_id: runId, at: at.toISOString() }] },
          },
        };
        // The answer is the admission, with the counts and the next slot as they are after it.
        const after = decide(deps.rule, subsystem, next.subsystems[subsystem]?.runs ?? [], at, deps.timeZone);
        const reason = `admitted: ${after.runsInWindow} of ${deps.rule.maxRuns} runs used in the last ${deps.rule.windowHours} h`;
        return { write: next, answer: { ...after, allowed: true, reason } };
      }),
    statusAll: async (subsystems) => {
      const file = readable(await deps.store.read());
      const at = now();
      return subsystems.map((name) => decide(deps.rule, name, file.subsystems[name]?.runs ?? [], at, deps.timeZone));
    },
  };
}
