import { readFile, stat } from "node:fs/promises";
import { auditLineSchema, dayFile, listDays } from "@gpu-canary/audit-feed";
import { errnoCode } from "@gpu-canary/errors";

/**
 * How many `event` lines the audit trail holds, for a counter that survives the daemon's
 * restarts and counts what any process wrote. Day files only grow (or are pruned whole), so a
 * file is read again only when its size or time changed: a scrape costs a stat per day.
 */
export function createAuditEventCount(deps: { dir: string; event: string }) {
  const needle = `"event":${JSON.stringify(deps.event)}`;
  const cache = new Map<string, { size: number; mtimeMs: number; count: number }>();

  const countIn = async (path: string): Promise<number | null> => {
    let info;
    try {
      info = await stat(path);
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return null;
      throw error;
    }
    const seen = cache.get(path);
    if (seen && seen.size === info.size && seen.mtimeMs === info.mtimeMs) return seen.count;
    const text = await readFile(path, "utf8");
    let count = 0;
    for (const line of text.split("\n")) {
      if (!line.includes(needle)) continue;
      try {
        const parsed = auditLineSchema.safeParse(JSON.parse(line));
        if (parsed.success && parsed.data.event === deps.event) count += 1;
      } catch {
        // a torn or corrupt line is no event (`audit query` skips it too)
      }
    }
    cache.set(path, { size: info.size, mtimeMs: info.mtimeMs, count });
    return count;
  };

  return async (): Promise<number> => {
    const paths = (await listDays(deps.dir)).map((day) => dayFile(deps.dir, day));
    for (const path of cache.keys()) if (!paths.includes(path)) cache.delete(path);
    let total = 0;
    for (const path of paths) total += (await countIn(path)) ?? 0;
    return total;
  };
}
