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
   * Copies this host's audit trail to the database (best effort: a warning on stderr when it
   * cannot, the next command catches up), then ends the pool. `failure`: what the command threw;
   * when it is the database away, the copy is not tried.
   */
  close(failure?: unknown): Promise<void>;
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
  const close = async (failure?: unknown) => {
    const warn = (error: unknown) =>
      io.stderr(
        `warning: this host's audit trail was not copied to the fleet database ${database} (${messageOf(error)}); the next command that reaches it catches up\n`,
      );
    try {
      if (failure !== undefined && isDatabaseAway(store, failure)) warn(failure);
      else await store.syncAudit(pool, { hostId, auditDir: settings.layout.auditDir });
    } catch (error) {
      warn(error);
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
    close,
  };
}
