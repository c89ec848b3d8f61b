import { AUDIT_EVENT_NAMES, type AuditLine, formatEvent } from "@gpu-canary/audit-feed";
import type { GlobalOptions, Io } from "../io.ts";
import { usageError } from "../output.ts";
import { auditFeedFor, loadSettings } from "../settings.ts";
import { parseAt } from "../time-input.ts";

const print = (io: Io, options: GlobalOptions, event: AuditLine) =>
  io.stdout(`${options.json ? JSON.stringify(event) : formatEvent(event)}\n`);

export async function runAuditTail(options: GlobalOptions & { lines?: string; follow?: boolean }, io: Io): Promise<number> {
  const count = options.lines === undefined ? 20 : Number(options.lines);
  if (!Number.isInteger(count) || count < 0)
    throw usageError(`-n: expected a whole number of events, got ${JSON.stringify(options.lines)}`, "gpu-canary audit tail -n 50");
  const settings = loadSettings(io);
  const feed = await auditFeedFor(settings, io);
  for (const event of await feed.tail(count)) print(io, options, event);
  if (!options.follow) return 0;
  const controller = new AbortController();
  const unsubscribe = io.onSignal(() => controller.abort());
  try {
    for await (const event of feed.follow({ signal: controller.signal })) print(io, options, event);
  } finally {
    unsubscribe();
  }
  return 0;
}

export async function runAuditQuery(
  options: GlobalOptions & { since?: string; until?: string; event?: string; run?: string },
  io: Io,
): Promise<number> {
  const settings = loadSettings(io);
  const zone = settings.config.maintenanceTimeZone;
  if (options.event !== undefined && !(AUDIT_EVENT_NAMES as readonly string[]).includes(options.event)) {
    throw usageError(
      `--event: expected one of ${AUDIT_EVENT_NAMES.join(", ")}, got ${JSON.stringify(options.event)}`,
      "gpu-canary audit query --event lock_force_released",
    );
  }
  const feed = await auditFeedFor(settings, io);
  const events = await feed.query({
    ...(options.since ? { since: parseAt(options.since, zone, "--since") } : {}),
    ...(options.until ? { until: parseAt(options.until, zone, "--until") } : {}),
    ...(options.event ? { event: options.event } : {}),
    ...(options.run ? { runId: options.run } : {}),
  });
  for (const event of events) print(io, options, event);
  return 0;
}
