import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import type { FleetGate, PolicyStores } from "@gpu-canary/spica-evaluator";
import type { Io } from "./io.ts";
import type { Settings } from "./settings.ts";

type FleetStore = typeof import("@gpu-canary/fleet-store");

/** A command's hold on the fleet's database (KLR_STATE_URL): its stores, its slots; closed at the command's end. */
export interface FleetState {
  store: FleetStore;
  pool: ReturnType<FleetStore["createFleetPool"]>;
  slots: ReturnType<FleetStore["createFleetSlots"]>;
  hostId: string;
  /** the database as `host:port/database`, never its user or password */
  database: string;
  /** budget and rate limits in the database, each mirrored to its file under KLR_HOME */
  stores: PolicyStores;
  gate: FleetGate;
  /**
   * Copies this host's audit trail to the database, then publishes its promotions, intents, applied
   * settings and last run (best effort: a warning on stderr when it cannot, the next command
   * catches up). Done by `close` unless the command did it already (a read command that shows
   * the fleet: it writes nothing afterwards).
   */
  publish(): Promise<void>;
  /**
   * `publish()` unless done, then ends the pool. `failure`: what the command threw; when it is
   * the database away, nothing is tried.
   */
  close(failure?: unknown): Promise<void>;
}

const AUDIT_NOT_COPIED = "this host's audit trail was not copied to the fleet database";

/**
 * What `fleet status` shows of this host (its promotions, intents, applied settings, last run), published
 * after its audit trail was copied; an unreadable promotion file is left out with a warning.
 */
async function publishHost(store: FleetStore, pool: FleetState["pool"], hostId: string, settings: Settings, io: Io): Promise<void> {
  const { readHostSummary } = await import("@gpu-canary/spica-evaluator");
  // loaded here, not at the top: only a command that publishes to the fleet pays for it
  const { listIntentDocs } = await import("@gpu-canary/tuning");
  const local = await readHostSummary(settings.layout);
  for (const u of local.unreadable)
    io.stderr(`warning: ${u.file} is not a promotion (${u.reason}); left out of the fleet database until it is repaired\n`);
  await store.publishHost(pool, {
    hostId,
    applied: local.applied && store.hostAppliedOf(local.applied),
    appliedError: local.appliedError,
    promotions: local.promotions,
    // open intents, and finished ones of the last 7 days: a long history is not copied again and again
    intents: await listIntentDocs(settings.layout),
  });
}

/** `fleet *` without KLR_STATE_URL: a settings error (exit 2) naming it. */
export function noStateUrl(): GpuCanaryError {
  return new GpuCanaryError(
    "FLEET_NOT_CONFIGURED",
    "KLR_STATE_URL is not set: this host keeps its state in files and belongs to no fleet",
    {
      kind: "usage",
      hint: "set KLR_STATE_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE on every host of the fleet, then run `gpu-canary fleet init` once",
    },
  );
}

/** The error says the fleet's database cannot be reached (FLEET_DB_UNREACHABLE, or pg's own error for it). */
export function isDatabaseAway(store: FleetStore, error: unknown): boolean {
  return (error instanceof GpuCanaryError && error.code === "FLEET_DB_UNREACHABLE") || store.isUnreachable(error);
}

/**
 * The fleet's database, when KLR_STATE_URL is set (else null: files only, and `pg` is never
 * loaded). `checkSchema` is asked first, so a missing or newer schema refuses before any run.
 */
export async function openFleet(
  settings: Settings,
  io: Io,
  options: { waitSeconds?: number; check?: boolean } = {},
): Promise<FleetState | null> {
  const { stateUrl, hostId, fleetMaxConcurrent } = settings.config;
  if (stateUrl === undefined) return null;
  const store = await import("@gpu-canary/fleet-store");
  const { localStoresOf } = await import("@gpu-canary/spica-evaluator");
  const pool = store.createFleetPool(stateUrl, { applicationName: `gpu-canary ${hostId}` });
  const end = () => pool.end().catch(() => undefined);
  try {
    if (options.check !== false) await store.checkSchema(pool);
  } catch (error) {
    await end();
    throw error;
  }
  const database = store.describeDatabase(pool);
  const warn = (what: string, error: unknown) =>
    io.stderr(`warning: ${what} ${database} (${messageOf(error)}); the next command that reaches it catches up\n`);
  let published = false;
  const publish = async () => {
    published = true;
    try {
      await store.syncAudit(pool, { hostId, auditDir: settings.layout.auditDir });
    } catch (error) {
      warn(AUDIT_NOT_COPIED, error);
      if (isDatabaseAway(store, error)) return;
    }
    try {
      await publishHost(store, pool, hostId, settings, io);
    } catch (error) {
      warn("this host's applied settings, last run, promotions and intents were not published to the fleet database", error);
    }
  };
  const close = async (failure?: unknown) => {
    try {
      if (failure !== undefined && isDatabaseAway(store, failure)) warn(AUDIT_NOT_COPIED, failure);
      else if (!published) await publish();
    } finally {
      await end();
    }
  };
  const local = localStoresOf(settings.layout);
  const slots = store.createFleetSlots({ pool, hostId, maxConcurrent: fleetMaxConcurrent });
  const gate: FleetGate = store.createRunGate(slots, {
    ...(options.waitSeconds === undefined ? {} : { waitSeconds: options.waitSeconds }),
    onRenewError: (error) => io.stderr(`warning: the fleet slot could not be renewed: ${messageOf(error)}\n`),
  });
  return {
    store,
    pool,
    slots,
    hostId,
    database,
    stores: {
      budget: store.mirroredBudgetStore(store.pgBudgetStore(pool, hostId), local.budget),
      rateLimits: store.mirroredStore(store.pgRateLimitStore(pool, hostId), local.rateLimits),
    },
    gate,
    publish,
    close,
  };
}
