import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { errnoCode } from "@gpu-canary/errors";
import { DateTime } from "luxon";

const FILE = /^gpu_canary_(\d{8})\.jsonl$/;

/** `YYYYMMDD` of an instant in the maintenance time zone: names the day file. */
export function dayOf(instant: Date, timeZone: string): string {
  return DateTime.fromJSDate(instant, { zone: timeZone }).toFormat("yyyyLLdd");
}

export function dayFile(dir: string, day: string): string {
  return join(dir, `gpu_canary_${day}.jsonl`);
}

/** The day files in the folder, oldest first. */
export async function listDays(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return [];
    throw error;
  }
  return names
    .map((name) => FILE.exec(name)?.[1])
    .filter((day): day is string => day !== undefined)
    .sort();
}
