import type { AuditLine } from "./events.ts";

const SKIP = new Set(["ts", "event", "run_id", "host", "pid"]);

/** One readable line per event: `2026-11-28T08:00:01Z lock_acquired run=r-1 pid=4242 generation=5`. */
export function formatEvent(event: AuditLine): string {
  const fields = Object.entries(event)
    .filter(([key]) => !SKIP.has(key))
    .map(
      ([key, value]) =>
        `${key}=${typeof value === "string" ? (/[\s"=]/.test(value) ? JSON.stringify(value) : value) : JSON.stringify(value)}`,
    );
  const ts = event.ts.replace(/\.\d{3}Z$/, "Z");
  return [ts, event.event, event.run_id ? `run=${event.run_id}` : null, `pid=${event.pid}`, ...fields]
    .filter((part) => part !== null)
    .join(" ");
}
