import type { ClockTime } from "@gpu-canary/config";
import { DateTime, IANAZone } from "luxon";

export interface CivilDate {
  year: number;
  month: number;
  day: number;
}

/**
 * The instant a wall-clock time on a calendar date happens in `zone`, with one rule for the
 * two DST edge cases (documented in the README):
 * - a time the clock skips (02:30 on a spring-forward night) resolves to the instant the clock
 *   jumps (03:00 EDT), the first moment the wall clock has passed it;
 * - a time the clock shows twice (01:30 on a fall-back night) resolves to its first occurrence.
 */
export function resolveLocal(date: CivilDate, time: ClockTime, zone: string): Date {
  const tz = IANAZone.create(zone);
  const wallAsUtc = Date.UTC(date.year, date.month - 1, date.day, time.hour, time.minute);
  const day = 24 * 3600_000;
  const offsets = new Set([tz.offset(wallAsUtc - day), tz.offset(wallAsUtc), tz.offset(wallAsUtc + day)]);
  const valid = [...offsets]
    .map((offset) => wallAsUtc - offset * 60_000)
    .filter((instant) => tz.offset(instant) * 60_000 === wallAsUtc - instant);
  if (valid.length > 0) return new Date(Math.min(...valid));
  // In a gap: find the transition between the two candidate instants (minute precision).
  const candidates = [...offsets].map((offset) => wallAsUtc - offset * 60_000);
  let low = Math.min(...candidates);
  let high = Math.max(...candidates);
  const afterOffset = tz.offset(high);
  while (high - low > 60_000) {
    const mid = low + Math.floor((high - low) / 120_000) * 60_000;
    if (tz.offset(mid) === afterOffset) high = mid;
    else low = mid;
  }
  return new Date(high);
}

export function civilDateOf(instant: Date, zone: string): CivilDate {
  const local = DateTime.fromJSDate(instant, { zone });
  return { year: local.year, month: local.month, day: local.day };
}

export function addDays(date: CivilDate, days: number): CivilDate {
  const shifted = new Date(Date.UTC(date.year, date.month - 1, date.day + days));
  return { year: shifted.getUTCFullYear(), month: shifted.getUTCMonth() + 1, day: shifted.getUTCDate() };
}

/** `YYYYMMDD`, the form that names budget and audit files. */
export function formatCivilDate(date: CivilDate): string {
  return `${String(date.year).padStart(4, "0")}${String(date.month).padStart(2, "0")}${String(date.day).padStart(2, "0")}`;
}

export function parseCivilDate(text: string): CivilDate | null {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(text);
  if (!match) return null;
  const date = { year: Number(match[1]), month: Number(match[2]), day: Number(match[3]) };
  const check = new Date(Date.UTC(date.year, date.month - 1, date.day));
  return check.getUTCFullYear() === date.year && check.getUTCMonth() + 1 === date.month && check.getUTCDate() === date.day ? date : null;
}

/** `2026-12-02`: a night's name for people (its file keeps `YYYYMMDD`). */
export function nightLabel(night: string): string {
  return `${night.slice(0, 4)}-${night.slice(4, 6)}-${night.slice(6)}`;
}

/** An instant as the operator's maintenance zone shows it: `2026-12-03 03:00 EST`. */
export function localTime(instant: Date, zone: string): string {
  return DateTime.fromJSDate(instant, { zone }).toFormat("yyyy-LL-dd HH:mm ZZZZ");
}
