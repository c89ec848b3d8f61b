import type { Config, Layout } from "@gpu-canary/config";
import type { FleetOverview } from "@gpu-canary/fleet-store";
import { nightOf } from "@gpu-canary/policy";
import { readHostSummary } from "@gpu-canary/spica-evaluator";
import { listIntentDocs } from "@gpu-canary/tuning";
import type { pino } from "pino";
import { warnOnceWhileFailing } from "./failure-warning.ts";

type FleetStore = typeof import("@gpu-canary/fleet-store");

export interface HostPublishDeps {
  store: FleetStore;
  pool: ReturnType<FleetStore["createFleetPool"]>;
  config: Config;
  layout: Pick<Layout, "promotionsDir" | "appliedFile" | "intentsDir" | "intentsProcessing" | "intentsProcessed" | "intentsFailed">;
  logger: pino.Logger;
  now: () => Date;
}

/**
 * This host's promotions, intents (open ones, and finished ones of the last 7 days), applied
 * settings and last run, published to the fleet's database after
 * its audit trail is copied: best effort like that copy (one warning when it starts failing, one
 * line when it works again; the next publication catches up). An unreadable promotion file is
 * left out, warned about once per reason.
 */
export function hostPublisher(deps: HostPublishDeps): () => Promise<void> {
  const { store, pool, config, logger } = deps;
  const publishing = warnOnceWhileFailing(logger, {
    failing:
      "this host's applied settings, last run, promotions and intents could not be published to the fleet database; the next try catches up",
    again: "this host's summary is published to the fleet database again",
  });
  const warned = new Set<string>();
  return async () => {
    try {
      const local = await readHostSummary(deps.layout);
      for (const u of local.unreadable) {
        const key = `${u.file}\n${u.reason}`;
        if (warned.has(key)) continue;
        warned.add(key);
        logger.warn({ file: u.file, reason: u.reason }, "not a promotion: left out of the fleet database until it is repaired");
      }
      await store.publishHost(pool, {
        hostId: config.hostId,
        applied: local.applied && store.hostAppliedOf(local.applied),
        appliedError: local.appliedError,
        promotions: local.promotions,
        intents: await listIntentDocs(deps.layout, { now: deps.now }),
      });
      publishing.worked();
    } catch (error) {
      publishing.failed(error);
    }
  };
}

/** `GET /fleet`: the same document as `gpu-canary fleet status --json`. */
export function fleetOverviewFor(deps: Omit<HostPublishDeps, "layout" | "logger">): () => Promise<FleetOverview> {
  const { store, pool, config } = deps;
  return () =>
    store.fleetOverview(pool, {
      hostId: config.hostId,
      maxConcurrent: config.fleetMaxConcurrent,
      night: nightOf(config.maintenanceWindow, config.maintenanceTimeZone, deps.now()),
      maxSeconds: config.maxDowntimeSeconds,
      now: deps.now,
    });
}
