import { createDowntimeBudget, nightOf } from "@gpu-canary/policy";
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

/** `fleet status`: every host with its last-seen time, the maintenance slots and who holds them, this host's budget tonight. */
export async function runFleetStatus(options: GlobalOptions, io: Io): Promise<number> {
  return withDatabase(io, true, async (fleet, settings) => {
    const [hosts, slots] = [await fleet.store.listHosts(fleet.pool), await fleet.slots.list()];
    const night = nightOf(settings.config.maintenanceWindow, settings.config.maintenanceTimeZone, io.now());
    const budget = await createDowntimeBudget({
      storeFor: fleet.stores.budget,
      maxSeconds: settings.config.maxDowntimeSeconds,
      now: io.now,
    }).status(night);
    const slotOf = (hostId: string) => slots.find((s) => s.hostId === hostId) ?? null;
    // Each host's downtime used tonight, as its own runs charged it (each host has its own production and maximum).
    const usedTonight = async (hostId: string): Promise<number | null> => {
      const read = await fleet.store.pgBudgetStore(fleet.pool, hostId)(night).read();
      return read.status === "ok" ? read.value.seconds_used : read.status === "missing" ? 0 : null;
    };
    const used = await Promise.all(hosts.map((h) => usedTonight(h.hostId)));
    const json = {
      database: fleet.database,
      host_id: fleet.hostId,
      max_concurrent: fleet.slots.maxConcurrent,
      hosts: hosts.map((h, i) => {
        const slot = slotOf(h.hostId);
        return {
          host_id: h.hostId,
          last_seen: isoUtc(h.lastSeen),
          in_maintenance: slot !== null,
          run_id: slot?.runId ?? null,
          since: slot ? isoUtc(slot.acquiredAt) : null,
          renewing: slot ? slot.renewing : null,
          budget_seconds_used: used[i] ?? null,
        };
      }),
      slots: slots.map((s) => ({
        host_id: s.hostId,
        run_id: s.runId,
        token: s.token,
        since: isoUtc(s.acquiredAt),
        renewed_at: isoUtc(s.renewedAt),
        renewing: s.renewing,
        seconds_since_renewal: s.secondsSinceRenewal,
        release_command: s.releaseCommand,
      })),
      budget: { date: night, seconds_used: budget.secondsUsed, max_seconds: budget.maxSeconds, seconds_left: budget.secondsLeft },
    };
    answer(io, options, json, () =>
      [
        `Fleet database ${fleet.database}: ${slots.length} of ${fleet.slots.maxConcurrent} maintenance slot${fleet.slots.maxConcurrent === 1 ? "" : "s"} held (this host: ${fleet.hostId})`,
        ...slots.map(
          (s) =>
            `  slot: ${s.hostId}, run ${s.runId}, since ${isoUtc(s.acquiredAt)}, ${
              s.renewing
                ? "renewing"
                : `STALE: not renewed for ${humanDuration(s.secondsSinceRenewal)}; if the host is dead: ${s.releaseCommand}`
            }`,
        ),
        `Hosts (${hosts.length}):`,
        ...hosts.map((h, i) => {
          const slot = slotOf(h.hostId);
          const u = used[i];
          return `  ${h.hostId}: last seen ${isoUtc(h.lastSeen)}${slot ? `, in maintenance (run ${slot.runId})` : ""}, ${u === null || u === undefined ? "budget unreadable" : `${u} s of downtime used tonight`}`;
        }),
        `Budget tonight (${fleet.hostId}, night of ${night}): ${budget.secondsUsed} of ${budget.maxSeconds} s used, ${budget.secondsLeft} s left`,
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
