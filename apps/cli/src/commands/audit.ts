import { AUDIT_EVENT_NAMES, type AuditLine, auditLineSchema, formatEvent } from "@gpu-canary/audit-feed";
import { isDatabaseAway, noStateUrl, openFleet } from "../fleet.ts";
import type { GlobalOptions, Io } from "../io.ts";
import { usageError } from "../output.ts";
import { type Settings, auditFeedFor, loadSettings } from "../settings.ts";
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
  options: GlobalOptions & { since?: string; until?: string; event?: string; run?: string; fleet?: boolean; host?: string },
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
  if (options.host !== undefined && options.host.trim() === "")
    throw usageError("--host: expected a host id (KLR_HOST_ID)", "gpu-canary audit query --fleet --host gpu-b");
  const filter = {
    ...(options.since ? { since: parseAt(options.since, zone, "--since") } : {}),
    ...(options.until ? { until: parseAt(options.until, zone, "--until") } : {}),
    ...(options.event ? { event: options.event } : {}),
    ...(options.run ? { runId: options.run } : {}),
  };
  if (options.fleet || options.host !== undefined) return fleetQuery(settings, options, io, filter);
  const feed = await auditFeedFor(settings, io);
  for (const event of await feed.query(filter)) print(io, options, event);
  return 0;
}

/**
 * `audit query --fleet [--host H]`: this host's trail copied to the fleet's database first, then
 * every host's events (or one host's) from there, in time order, each with its `host_id`.
 */
async function fleetQuery(
  settings: Settings,
  options: GlobalOptions & { host?: string },
  io: Io,
  filter: { since?: Date; until?: Date; event?: string; runId?: string },
): Promise<number> {
  if (settings.config.stateUrl === undefined) throw noStateUrl();
  const fleet = await openFleet(settings, io);
  if (!fleet) throw noStateUrl();
  let failure: unknown;
  try {
    try {
      await fleet.store.syncAudit(fleet.pool, { hostId: fleet.hostId, auditDir: settings.layout.auditDir });
    } catch (error) {
      // the database away refuses the query; any other failure to copy: close() tries again and warns
      if (isDatabaseAway(fleet.store, error)) throw error;
    }
    const events = await fleet.store.queryAudit(fleet.pool, {
      ...filter,
      ...(options.host === undefined ? {} : { hostId: options.host }),
    });
    for (const { hostId, record } of events) {
      const line = auditLineSchema.safeParse(record);
      io.stdout(
        `${
          options.json
            ? JSON.stringify({ ...record, host_id: hostId })
            : `${hostId} ${line.success ? formatEvent(line.data) : JSON.stringify(record)}`
        }\n`,
      );
    }
    return 0;
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    await fleet.close(failure);
  }
}
