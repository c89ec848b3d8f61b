import { createDowntimeBudget } from "@gpu-canary/policy";
import type pg from "pg";
import { describeDatabase } from "./connection.ts";
import { createFleetSlots } from "./fleet-slots.ts";
import { listHosts } from "./hosts.ts";
import { listFleetIntents } from "./intents.ts";
import { listFleetPromotions } from "./promotions.ts";
import { pgBudgetStore } from "./stores.ts";

export interface FleetOverviewOptions {
  /** this host (KLR_HOST_ID) */
  hostId: string;
  /** KLR_FLEET_MAX_CONCURRENT */
  maxConcurrent: number;
  /** tonight's budget date (`nightOf` the window), the same for every host of the fleet */
  night: string;
  /** this host's KLR_MAX_DOWNTIME_SECONDS */
  maxSeconds: number;
  now?: () => Date;
}

/** An instant as the command line prints it: ISO 8601, UTC, without zero milliseconds. */
const iso = (date: Date) => date.toISOString().replace(".000Z", "Z");

const record = (value: unknown): Record<string, unknown> | null =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
const str = (value: unknown) => (typeof value === "string" ? value : null);
const num = (value: unknown) => (typeof value === "number" && Number.isFinite(value) ? value : null);

/** `applied` as a host published it (publishHost), checked field by field: null when it published none. */
function appliedOf(info: Record<string, unknown>) {
  const a = record(info.applied);
  if (a === null) return null;
  return {
    vllm_memory_util: num(a.vllm_memory_util),
    whisper_model_size: str(a.whisper_model_size),
    promotion_run_id: str(a.promotion_run_id),
    since: str(a.applied_at),
  };
}

function lastRunOf(info: Record<string, unknown>) {
  const r = record(info.last_run);
  if (r === null) return null;
  return { run_id: str(r.run_id), at: str(r.at), verdict: str(r.status), mode: str(r.mode) };
}

/**
 * The fleet as `gpu-canary fleet status --json` and the daemon's `GET /fleet` show it: every
 * host (last seen; in maintenance or not, which run, since when, renewing or not; its downtime
 * used tonight; production's applied settings; its last run and verdict; its pending
 * promotions; its open intents), the slots, this host's budget tonight, the fleet's pending
 * promotions and its open (pending or processing) intents, oldest first.
 */
export async function fleetOverview(pool: pg.Pool, options: FleetOverviewOptions) {
  const { hostId, maxConcurrent, night } = options;
  const slotsApi = createFleetSlots({ pool, hostId, maxConcurrent });
  const [hosts, slots, pending, open] = [
    await listHosts(pool),
    await slotsApi.list(),
    await listFleetPromotions(pool, { state: "proposed" }),
    await listFleetIntents(pool, { state: ["pending", "processing"] }),
  ];
  const budget = await createDowntimeBudget({
    storeFor: pgBudgetStore(pool, hostId),
    maxSeconds: options.maxSeconds,
    ...(options.now ? { now: options.now } : {}),
  }).status(night);
  // Each host's downtime used tonight, as its own runs charged it (each host has its own production and maximum).
  const usedTonight = async (id: string): Promise<number | null> => {
    const read = await pgBudgetStore(pool, id)(night).read();
    return read.status === "ok" ? read.value.seconds_used : read.status === "missing" ? 0 : null;
  };
  const used = await Promise.all(hosts.map((h) => usedTonight(h.hostId)));
  const pendingPromotions = pending.map((p) => {
    const candidate = record(p.doc.candidate);
    return {
      run_id: p.runId,
      host_id: p.hostId,
      created_at: iso(p.createdAt),
      vllm_memory_util: num(candidate?.vllm_memory_util),
      whisper_model_size: str(candidate?.whisper_model_size),
    };
  });
  const openIntents = open.map((i) => ({ id: i.id, host_id: i.hostId, kind: i.kind, state: i.state, created_at: iso(i.createdAt) }));
  return {
    database: describeDatabase(pool),
    host_id: hostId,
    max_concurrent: maxConcurrent,
    hosts: hosts.map((h, i) => {
      const slot = slots.find((s) => s.hostId === h.hostId) ?? null;
      return {
        host_id: h.hostId,
        last_seen: iso(h.lastSeen),
        in_maintenance: slot !== null,
        run_id: slot?.runId ?? null,
        since: slot ? iso(slot.acquiredAt) : null,
        renewing: slot ? slot.renewing : null,
        budget_seconds_used: used[i] ?? null,
        applied: appliedOf(h.info),
        applied_error: str(h.info.applied_error),
        last_run: lastRunOf(h.info),
        pending_promotions: pendingPromotions.filter((p) => p.host_id === h.hostId).map((p) => p.run_id),
        open_intents: openIntents.filter((i) => i.host_id === h.hostId).map((i) => i.id),
      };
    }),
    slots: slots.map((s) => ({
      host_id: s.hostId,
      run_id: s.runId,
      token: s.token,
      since: iso(s.acquiredAt),
      renewed_at: iso(s.renewedAt),
      renewing: s.renewing,
      seconds_since_renewal: s.secondsSinceRenewal,
      release_command: s.releaseCommand,
    })),
    budget: { date: night, seconds_used: budget.secondsUsed, max_seconds: budget.maxSeconds, seconds_left: budget.secondsLeft },
    pending_promotions: pendingPromotions,
    open_intents: openIntents,
  };
}

export type FleetOverview = Awaited<ReturnType<typeof fleetOverview>>;
