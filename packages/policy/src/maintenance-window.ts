import type { WindowSpec } from "@gpu-canary/config";
import { type CivilDate, addDays, civilDateOf, formatCivilDate, resolveLocal } from "./local-time.ts";

export interface WindowOccurrence {
  opensAt: Date;
  closesAt: Date;
  /** YYYYMMDD, in the window's zone, of the day the window opened: names the night's budget file */
  night: string;
}

export interface WindowState extends WindowOccurrence {
  /**
   * The night that counts now, the same in every view (`nightOf`): the open window's, else the
   * one that opened last — its budget stays the night's until the next window opens.
   */
  night: string;
  /** the night of the window opensAt/closesAt describe: the open one, else the next */
  windowNight: string;
  /** true when opensAt <= at < closesAt; then opensAt/closesAt are the current window, else the next */
  open: boolean;
  /** seconds until closesAt while open, 0 when closed */
  secondsLeft: number;
  /** seconds until opensAt while closed, 0 when open */
  secondsUntilOpen: number;
  timeZone: string;
  spec: string;
}

/** Does the window close on the day after it opens (23:00-02:00, and a full day's 03:00-03:00). */
export function crossesMidnight(spec: WindowSpec): boolean {
  return spec.end.hour * 60 + spec.end.minute <= spec.start.hour * 60 + spec.start.minute;
}

/** The window that opens on a given local calendar date. */
export function occurrenceOn(spec: WindowSpec, zone: string, date: CivilDate): WindowOccurrence {
  const opensAt = resolveLocal(date, spec.start, zone);
  const closesAt = resolveLocal(crossesMidnight(spec) ? addDays(date, 1) : date, spec.end, zone);
  return { opensAt, closesAt, night: formatCivilDate(date) };
}

function occurrencesAround(spec: WindowSpec, zone: string, at: Date): WindowOccurrence[] {
  const today = civilDateOf(at, zone);
  return [-2, -1, 0, 1, 2].map((days) => occurrenceOn(spec, zone, addDays(today, days)));
}

/** Is the window open at `at`; the current window's edges when it is, the next one's when not. */
export function windowAt(spec: WindowSpec, zone: string, at: Date): WindowState {
  const t = at.getTime();
  const occurrences = occurrencesAround(spec, zone, at);
  const current = occurrences.find((o) => o.opensAt.getTime() <= t && t < o.closesAt.getTime());
  const chosen = current ?? occurrences.find((o) => o.opensAt.getTime() > t);
  if (!chosen) throw new Error(`no window ${spec.text} in ${zone} around ${at.toISOString()}`);
  return {
    ...chosen,
    night: current ? current.night : lastOpened(spec, zone, at).night,
    windowNight: chosen.night,
    open: current !== undefined,
    secondsLeft: current ? (current.closesAt.getTime() - t) / 1000 : 0,
    secondsUntilOpen: current ? 0 : (chosen.opensAt.getTime() - t) / 1000,
    timeZone: zone,
    spec: spec.text,
  };
}

/** The window that opened most recently at or before `at` (it may have closed since). */
export function lastOpened(spec: WindowSpec, zone: string, at: Date): WindowOccurrence {
  const t = at.getTime();
  const opened = occurrencesAround(spec, zone, at).filter((o) => o.opensAt.getTime() <= t);
  const last = opened.at(-1);
  if (!last) throw new Error(`no window ${spec.text} in ${zone} opened before ${at.toISOString()}`);
  return last;
}

/** The night a budget belongs to: the window open now, or else the one that opened last. */
export function nightOf(spec: WindowSpec, zone: string, at: Date): string {
  return lastOpened(spec, zone, at).night;
}
