import type { FleetOverview } from "@gpu-canary/fleet-store";
import { nightOf } from "@gpu-canary/policy";
import { type FleetState, noStateUrl, openFleet } from "../fleet.ts";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, humanDuration, isoUtc, usageError } from "../output.ts";
import { type Settings, auditFeedFor, loadSettings } from "../settings.ts";

/** The fleet's database for a `fleet` command: KLR_STATE_URL unset is a settings error (exit 2); the pool ends with the command. */
export async function withDatabase<T>(io: Io, check: boolean, work: (fleet: FleetState, settings: Settings) => Promise<T>): Promise<T> {
  const settings = loadSettings(io);
  if (settings.config.stateUrl === undefined) throw noStateUrl();
  const fleet = await openFleet(settings, io, { check });
  if (!fleet) throw noStateUrl();
  let failure: unknown;
  try {
    return await work(fleet, settings);
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    await fleet.close(failure);
  }
}

/** `fleet init`: create or migrate the schema (idempotent), and say from which version to which. */
export async function runFleetInit(options: GlobalOptions, io: Io): Promise<number> {
  return withDatabase(io, false, async (fleet) => {
    const result = await fleet.store.migrate(fleet.pool);
    await fleet.store.touchHost(fleet.pool, fleet.hostId);
    answer(
      io,
      options,
      { database: fleet.database, from: result.from, to: result.to, applied: result.applied, host_id: fleet.hostId },
      () =>
        result.applied.length === 0
          ? `The fleet database ${fleet.database} is at schema version ${result.to}: nothing to do`
          : `Migrated the fleet database ${fleet.database} from schema version ${result.from} to ${result.to} (${result.applied.join(", ")})`,
    );
    return 0;
  });
}

/** A host's applied settings, last run, pending promotions and open intents, in a few words. */
function hostLine(h: FleetOverview["hosts"][number]): string {
  const parts = [`last seen ${h.last_seen}`];
  if (h.in_maintenance) parts.push(`in maintenance (run ${h.run_id}, since ${h.since}, ${h.renewing ? "renewing" : "NOT renewing"})`);
  parts.push(h.budget_seconds_used === null ? "budget unreadable" : `${h.budget_seconds_used} s of downtime used tonight`);
  const a = h.applied;
  if (h.applied_error !== null) parts.push(`applied settings unreadable (${h.applied_error})`);
  else if (a === null) parts.push("nothing applied by gpu-canary");
  else
    parts.push(
      `applied: util ${a.vllm_memory_util ?? "?"}, whisper ${a.whisper_model_size ?? "?"}${a.promotion_run_id ? ` (promotion ${a.promotion_run_id})` : ""}${a.since ? ` since ${a.since}` : ""}`,
    );
  const r = h.last_run;
  parts.push(
    r === null ? "no run yet" : `last run ${r.run_id ?? "?"} ${r.mode ?? ""} ${r.verdict ?? "?"} at ${r.at ?? "?"}`.replace(/ {2,}/g, " "),
  );
  parts.push(h.pending_promotions.length === 0 ? "no pending promotion" : `pending: ${h.pending_promotions.join(", ")}`);
  parts.push(`${h.open_intents.length} open intent${h.open_intents.length === 1 ? "" : "s"}`);
  return `  ${h.host_id}: ${parts.join("; ")}`;
}

/**
 * `fleet status`: every host (last seen, in maintenance, budget used tonight, applied settings,
 * last run, pending promotions, open intents), the maintenance slots and who holds them, this host's budget
 * tonight, the fleet's pending promotions and open intents. This host publishes itself first, so it shows as it is now.
 */
export async function runFleetStatus(options: GlobalOptions, io: Io): Promise<number> {
  return withDatabase(io, true, async (fleet, settings) => {
    await fleet.publish();
    const json = await fleet.store.fleetOverview(fleet.pool, {
      hostId: fleet.hostId,
      maxConcurrent: fleet.slots.maxConcurrent,
      night: nightOf(settings.config.maintenanceWindow, settings.config.maintenanceTimeZone, io.now()),
      maxSeconds: settings.config.maxDowntimeSeconds,
      now: io.now,
    });
    const { slots, hosts, budget } = json;
    answer(io, options, json, () =>
      [
        `Fleet database ${json.database}: ${slots.length} of ${json.max_concurrent} maintenance slot${json.max_concurrent === 1 ? "" : "s"} held (this host: ${json.host_id})`,
        ...slots.map(
          (s) =>
            `  slot: ${s.host_id}, run ${s.run_id}, since ${s.since}, ${
              s.renewing
                ? "renewing"
                : `STALE: not renewed for ${humanDuration(s.seconds_since_renewal)}; if the host is dead: ${s.release_command}`
            }`,
        ),
        `Hosts (${hosts.length}):`,
        ...hosts.map(hostLine),
        `Budget tonight (${json.host_id}, night of ${budget.date}): ${budget.seconds_used} of ${budget.max_seconds} s used, ${budget.seconds_left} s left`,
        `Pending promotions (${json.pending_promotions.length})${json.pending_promotions.length === 0 ? "" : ":"}`,
        ...json.pending_promotions.map(
          (p) =>
            `  ${p.run_id} on ${p.host_id}, ${p.created_at}: util ${p.vllm_memory_util ?? "?"}, whisper ${p.whisper_model_size ?? "?"} (on ${p.host_id}: gpu-canary apply ${p.run_id})`,
        ),
      ].join("\n"),
    );
    return 0;
  });
}

/** `fleet release HOST --force [--reason TEXT]`: an operator frees a dead host's slots; audited. */
export async function runFleetRelease(
  host: string,
  options: GlobalOptions & { force?: boolean; reason?: string },
  io: Io,
): Promise<number> {
  if (host.trim() === "") throw usageError("fleet release: expected a host id", "gpu-canary fleet release gpu-b --force");
  if (!options.force)
    throw usageError(
      `releasing ${host}'s fleet maintenance slots needs --force: a live run there would lose its slot while production may be down`,
      `check the host first (\`gpu-canary fleet status\`), then: gpu-canary fleet release ${host} --force --reason 'why'`,
    );
  return withDatabase(io, true, async (fleet, settings) => {
    const reason = options.reason ?? "forced from the command line";
    const result = await fleet.slots.releaseHost(host, { force: true, by: fleet.hostId, reason });
    const runs = result.released.map((h) => h.runId);
    if (runs.length > 0)
      await (
        await auditFeedFor(settings, io)
      ).append({
        event: "fleet_slot_released",
        run_id: runs[0] ?? null,
        runs,
        forced: true,
        reason,
        holder_host: host,
        tokens: result.released.map((h) => h.token),
      });
    answer(
      io,
      options,
      {
        host_id: host,
        released: result.released.map((h) => ({ run_id: h.runId, token: h.token, since: isoUtc(h.acquiredAt) })),
        by: result.by,
        reason,
      },
      () =>
        runs.length === 0
          ? `${host} holds no fleet maintenance slot; nothing to release`
          : `Released ${host}'s fleet maintenance slot${runs.length === 1 ? "" : "s"} (run ${runs.join(", ")}); recorded in the audit trail`,
    );
    return 0;
  });
}
