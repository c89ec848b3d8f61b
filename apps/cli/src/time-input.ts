import { parseCivilDate } from "@gpu-canary/policy";
import { DateTime } from "luxon";
import { usageError } from "./output.ts";

/** `--at` (and `--since`, `--until`): ISO 8601; without an offset it is read in the maintenance time zone. */
export function parseAt(text: string, zone: string, flag = "--at"): Date {
  const parsed = DateTime.fromISO(text, { zone, setZone: true });
  if (!parsed.isValid) {
    throw usageError(
      `${flag}: expected an ISO 8601 time such as 2026-11-29T03:30:00Z or 2026-11-29T03:30, got ${JSON.stringify(text)}`,
      "a time without an offset is read in KLR_GPU_MAINTENANCE_TZ",
    );
  }
  // Windows and nights are computed hours and days around it: at the edge of what a Date holds
  // (±275,760 years) they would not exist.
  if (parsed.year < 1970 || parsed.year > 9999) {
    throw usageError(
      `${flag}: ${JSON.stringify(text)} is outside the years 1970 to 9999`,
      "give a time of this era, such as 2026-11-29T03:30",
    );
  }
  return parsed.toJSDate();
}

export function parseDateOption(text: string): string {
  if (!parseCivilDate(text)) {
    throw usageError(
      `--date: expected a calendar date as YYYYMMDD, such as 20261128, got ${JSON.stringify(text)}`,
      "the date names the night's budget file: gpu_budget_YYYYMMDD.json",
    );
  }
  return text;
}
