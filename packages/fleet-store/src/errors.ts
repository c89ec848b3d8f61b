import { GpuCanaryError } from "@gpu-canary/errors";

/** The database cannot be reached: new quiesced runs and applies refuse (exit 3), naming it without its password. */
export class FleetDbUnreachableError extends GpuCanaryError {
  constructor(database: string, reason: string, cause?: unknown) {
    super("FLEET_DB_UNREACHABLE", `the fleet database ${database} cannot be reached: ${reason}`, {
      kind: "refused",
      hint: `quiesced runs and applies stay refused until it answers (check the server and KLR_STATE_URL); predictive runs and read commands keep working with what is local`,
      cause,
      details: { database },
    });
  }
}

/** The database has no gpu-canary schema yet, or an older one than this version needs. */
export class FleetSchemaMissingError extends GpuCanaryError {
  constructor(database: string, found: number, needed: number) {
    const what =
      found === 0 ? "has no gpu-canary schema" : `has gpu-canary schema version ${found}, older than the ${needed} this version needs`;
    super("FLEET_SCHEMA_MISSING", `the fleet database ${database} ${what}`, {
      kind: "refused",
      hint: "create or migrate it with `gpu-canary fleet init` (safe to run on every host, at once or again)",
      details: { database, found, needed },
    });
  }
}

/** The database's schema is newer than this version of gpu-canary knows: it refuses rather than guess. */
export class FleetSchemaNewerError extends GpuCanaryError {
  constructor(database: string, found: number, known: number) {
    super(
      "FLEET_SCHEMA_NEWER",
      `the fleet database ${database} has gpu-canary schema version ${found}, newer than the ${known} this version knows`,
      {
        kind: "refused",
        hint: "upgrade gpu-canary on this host to the version the rest of the fleet runs",
        details: { database, found, known },
      },
    );
  }
}

export interface SlotHolder {
  hostId: string;
  runId: string;
  token: number;
  acquiredAt: Date;
  renewedAt: Date;
}

/** Every fleet maintenance slot is held: the message names the holders. */
export class FleetSlotsFullError extends GpuCanaryError {
  readonly holders: SlotHolder[];

  constructor(maxConcurrent: number, holders: SlotHolder[]) {
    const named = holders.map((h) => `${h.hostId} (run ${h.runId}, since ${h.acquiredAt.toISOString()})`).join(", ");
    super("FLEET_SLOTS_FULL", `all ${maxConcurrent} fleet maintenance slot${maxConcurrent === 1 ? " is" : "s are"} held: ${named}`, {
      kind: "refused",
      hint: "wait for them (--wait SECONDS), or, if a holder is dead, release its slot with `gpu-canary fleet release HOST --force`",
      details: {
        maxConcurrent,
        holders: holders.map((h) => ({ ...h, acquiredAt: h.acquiredAt.toISOString(), renewedAt: h.renewedAt.toISOString() })),
      },
    });
    this.holders = holders;
  }
}

/** A run's slot is gone (released by force): its fencing token no longer holds, destructive steps must stop. */
export class FleetSlotLostError extends GpuCanaryError {
  constructor(hostId: string, token: number) {
    super("FLEET_SLOT_LOST", `host ${hostId} no longer holds the fleet maintenance slot of fencing token ${token}`, {
      kind: "refused",
      hint: "an operator released it (see the audit trail); the run restores production and stops — start it again when a slot is free",
      details: { hostId, token },
    });
  }
}

/** Releasing another host's slot is an operator's decision, said with --force. */
export class FleetReleaseRefusedError extends GpuCanaryError {
  constructor(hostId: string, by: string) {
    super("FLEET_RELEASE_NEEDS_FORCE", `the fleet maintenance slot of ${hostId} belongs to another host than ${by}`, {
      kind: "usage",
      hint: `if ${hostId} is dead or its run is gone, release it with \`gpu-canary fleet release ${hostId} --force\` (audited)`,
      details: { hostId, by },
    });
  }
}

/** The server answers but will not let this host in (password, user, database name): a setting to fix. */
export class FleetDbLoginError extends GpuCanaryError {
  constructor(database: string, reason: string, cause?: unknown) {
    super("FLEET_DB_LOGIN_FAILED", `the fleet database ${database} refused this host: ${reason}`, {
      kind: "fault",
      hint: "check the user, password and database name in KLR_STATE_URL (the database must exist; `gpu-canary fleet init` creates the tables, not the database)",
      cause,
      details: { database },
    });
  }
}
