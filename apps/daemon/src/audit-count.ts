import { readFile, stat } from "node:fs/promises";
import { type AuditLine, auditLineSchema, dayFile, listDays } from "@gpu-canary/audit-feed";
import { errnoCode } from "@gpu-canary/errors";

/**
 * What the audit trail's `event` lines say, each line turned into a value by `pick` (null: not
 * one to keep), for metrics that survive the daemon's restarts and see what any process wrote.
 * Day files only grow (or are pruned whole), so a file is read again only when its size or time
 * changed: a scrape costs a stat per day.
 */
export function createAuditScan<T>(deps: { dir: string; event: string; pick: (line: AuditLine) => T | null }) {
  const needle = `"event":${JSON.stringify(deps.event)}`;
  const cache = new Map<string, { size: number; mtimeMs: number; values: T[] }>();

  const valuesIn = async (path: string): Promise<T[]> => {
    let info;
    try {
      info = await stat(path);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return [];
      throw error;
    }
    const seen = cache.get(path);
    if (seen && seen.size === info.size && seen.mtimeMs === info.mtimeMs) return seen.values;
    const text = await readFile(path, "utf8");
    const values: T[] = [];
    for (const line of text.split("\n")) {
      if (!line.includes(needle)) continue;
      try {
        const parsed = auditLineSchema.safeParse(JSON.parse(line));
        if (!parsed.success || parsed.data.event !== deps.event) continue;
        const value = deps.pick(parsed.data);
        if (value !== null) values.push(value);
      } catch {
        // a torn or corrupt line is no event (`audit query` skips it too)
      }
    }
    cache.set(path, { size: info.size, mtimeMs: info.mtimeMs, values });
    return values;
  };

  return async (): Promise<T[]> => {
    const paths = (await listDays(deps.dir)).map((day) => dayFile(deps.dir, day));
    for (const path of cache.keys()) if (!paths.includes(path)) cache.delete(path);
    const all: T[] = [];
    for (const path of paths) all.push(...(await valuesIn(path)));
    return all;
  };
}

/** How many `event` lines the audit trail holds (see createAuditScan). */
export function createAuditEventCount(deps: { dir: string; event: string }) {
  const scan = createAuditScan({ ...deps, pick: () => true });
  return async (): Promise<number> => (await scan()).length;
}
