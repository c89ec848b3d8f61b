import type { AuditFeed } from "@gpu-canary/audit-feed";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import type { RolloutAssignment, RolloutResult } from "@gpu-canary/fleet-store";
import { windowAt } from "@gpu-canary/policy";
import {
  type SettingsChangeOutcome,
  type SpicaGPUAllocation,
  hostFingerprint,
  promotionFile,
  promotionSchema,
  readApplied,
} from "@gpu-canary/spica-evaluator";
import { readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import type { Logger } from "pino";
import { warnOnceWhileFailing } from "./failure-warning.ts";
import type { SettingsRequest } from "./settings-changes.ts";

/** This host's hold on the fleet's rollouts (KLR_STATE_URL), bound to its host id. */
export interface RolloutFleet {
  /** hosts.info.fingerprint: what `fleet rollout` compares each host with */
  publishFingerprint(fingerprint: unknown): Promise<void>;
  assignment(): Promise<RolloutAssignment | null>;
  report(rolloutId: string, result: RolloutResult, reason: string): Promise<boolean>;
  /** the rollouts whose promotion this host applied and still holds as applied */
  appliedHere(): Promise<{ rolloutId: string; runId: string }[]>;
}

type FleetStore = typeof import("@gpu-canary/fleet-store");

/** The fleet store's rollout calls bound to this host's pool and id. */
export function rolloutFleetFor(store: FleetStore, pool: Parameters<FleetStore["assignmentFor"]>[0], hostId: string): RolloutFleet {
  return {
    publishFingerprint: (fingerprint) => store.touchHost(pool, hostId, { fingerprint }),
    assignment: () => store.assignmentFor(pool, hostId),
    report: (rolloutId, result, reason) => store.reportResult(pool, rolloutId, hostId, result, reason),
    appliedHere: () => store.appliedRolloutsOf(pool, hostId),
  };
}

/**
 * An apply refused for a reason that will not pass by itself: the host is not the one the promotion
 * was proven on (stale), or the promotion cannot be applied here. The host is skipped, the rollout goes on.
 */
const SKIPPED = new Set(["PROMOTION_STALE", "PROMOTION_NOT_APPLICABLE", "APPLY_CHANGES_WHISPER"]);

/** A try refused because the fleet's slot or the GPU lock was held is tried again after this long. */
const BUSY_RETRY_MS = 60_000;

/** How often the promotions a rollout applied here are looked at for a later rollback. */
const ROLLBACK_CHECK_MS = 15_000;

/** What the host's try means to the rollout. */
export function rolloutResultOf(done: unknown): { result: RolloutResult; reason: string } {
  if (done instanceof GpuCanaryError) {
    if (SKIPPED.has(done.code)) return { result: "skipped", reason: `${done.code}: ${done.message}` };
    // a gate, a fleet slot, the database away: not now, the host tries again at its next window
    if (done.kind === "refused") return { result: "refused", reason: `${done.code}: ${done.message}` };
    return { result: "failed", reason: `${done.code}: ${done.message}` };
  }
  if (typeof done === "object" && done !== null && "status" in done && "reason" in done) {
    const outcome = done as SettingsChangeOutcome;
    return { result: outcome.status, reason: outcome.reason };
  }
  return { result: "failed", reason: messageOf(done) };
}

/**
 * The daemon's part in the fleet's rollouts (`gpu-canary fleet rollout`): it publishes this host's
 * fingerprint (at start, then once a night: nvidia-smi is not asked at every poll), and, while the
 * window is open, takes this host's assignment as an apply (by "rollout"), at most one try a night,
 * whatever KLR_AUTO_APPLY says (an operator asked for the rollout); then reports how it went. Without
 * KLR_VLLM_CONFIG (apply's only way to change production) the host is reported skipped. A promotion a
 * rollout applied here that production later went back from (an out-of-memory event within
 * KLR_APPLY_WATCH_HOURS, an operator's rollback) is reported rolled_back, which pauses the rollout: it
 * did not hold on a host like the others.
 */
export function createRolloutStep(deps: { evaluator: SpicaGPUAllocation; fleet: RolloutFleet; logger: Logger; audit: AuditFeed }) {
  const { evaluator, fleet, logger } = deps;
  const { config, layout, now } = evaluator.context;
  // each assignment's try, by night: when it may be tried again (never, this night, unless another host held the slot or the lock)
  const tried = new Map<string, number>();
  let publishedFor: string | null = null;
  const reading = warnOnceWhileFailing(logger, {
    failing: "rollout: this host's assignment could not be read",
    again: "rollout: the fleet database answers again",
  });
  let lastKey: string | null = null;
  let rollbacksCheckedAt = Number.NEGATIVE_INFINITY;
  const watching = warnOnceWhileFailing(logger, {
    failing: "rollout: could not check whether this host went back from a promotion a rollout applied",
    again: "rollout: the promotions rollouts applied here are checked again",
  });

  const publish = async (night: string) => {
    if (publishedFor === night) return;
    publishedFor = night;
    try {
      await fleet.publishFingerprint(await hostFingerprint(evaluator.context));
    } catch (error) {
      logger.warn({ err: messageOf(error) }, "this host's fingerprint could not be published to the fleet database");
    }
  };

  /** This host's part in a rollout, in its audit trail: best effort, the rollout's record is the database's. */
  const audited = (rolloutId: string, runId: string, result: RolloutResult, reason: string) =>
    deps.audit
      .append({ event: "fleet_rollout_host", run_id: runId, rollout_id: rolloutId, result, reason })
      .catch((error: unknown) => logger.warn({ err: messageOf(error) }, "the rollout's audit event could not be written"));

  const report = async (rolloutId: string, runId: string, result: RolloutResult, reason: string) => {
    logger.info({ rollout: rolloutId, run_id: runId, result, reason }, "rollout: this host's part worked");
    await audited(rolloutId, runId, result, reason);
    // Not recorded (the database away): the assignment stays, and the next night's try finds the result here.
    await fleet.report(rolloutId, result, reason).catch((error: unknown) => {
      logger.error(
        { err: messageOf(error), rollout: rolloutId, result },
        "rollout: the result could not be reported to the fleet database",
      );
    });
  };

  /** What a try already left on this host: production serving it, or its promotion rolled back or stale here. */
  const settledHere = async (a: RolloutAssignment): Promise<{ result: RolloutResult; reason: string } | null> => {
    const applied = await readApplied(layout.appliedFile);
    if (applied?.promotion_run_id === a.runId) return { result: "applied", reason: `production serves promotion ${a.runId} already` };
    const file = promotionFile(layout.promotionsDir, a.runId);
    const local = await readJsonState(file, promotionSchema);
    if (local.status !== "ok") return null;
    if (local.value.state === "rolled_back")
      return { result: "rolled_back", reason: local.value.state_reason ?? "rolled back on this host" };
    if (local.value.state === "stale") return { result: "skipped", reason: local.value.state_reason ?? "stale on this host" };
    return null;
  };

  /** Promotions a rollout applied here and this host has rolled back since, each told to its rollout once. */
  const tellRollbacks = async () => {
    if (now().getTime() - rollbacksCheckedAt < ROLLBACK_CHECK_MS) return;
    rollbacksCheckedAt = now().getTime();
    try {
      for (const a of await fleet.appliedHere()) {
        const local = await readJsonState(promotionFile(layout.promotionsDir, a.runId), promotionSchema);
        if (local.status !== "ok" || local.value.state !== "rolled_back") continue;
        const reason = local.value.state_reason ?? "rolled back on this host";
        // Recorded once: a second report (another daemon's, a restart's) answers false.
        if (!(await fleet.report(a.rolloutId, "rolled_back", reason))) continue;
        logger.warn(
          { rollout: a.rolloutId, run_id: a.runId, reason },
          "rollout: production here went back from its promotion; the rollout is paused",
        );
        await audited(a.rolloutId, a.runId, "rolled_back", reason);
      }
      watching.worked();
    } catch (error) {
      watching.failed(error);
    }
  };

  return {
    /** This host's assignment as a settings change, when it has one to try now; else null. */
    async choice(): Promise<SettingsRequest | null> {
      const window = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, now());
      await publish(window.night);
      await tellRollbacks();
      if (!window.open) return null;
      let a: RolloutAssignment | null;
      try {
        a = await fleet.assignment();
        reading.worked();
      } catch (error) {
        reading.failed(error);
        return null;
      }
      if (!a) return null;
      const key = `${a.rolloutId}@${window.night}`;
      if ((tried.get(key) ?? 0) > now().getTime()) return null;
      tried.set(key, Number.POSITIVE_INFINITY);
      lastKey = key;
      if (config.vllmConfigFile === undefined) {
        // apply could not change production here: the rollout goes on without this host, saying why
        await report(
          a.rolloutId,
          a.runId,
          "skipped",
          "KLR_VLLM_CONFIG is not set on this host: its settings change only through vLLM's --config file",
        );
        return null;
      }
      const settled = await settledHere(a);
      if (settled) {
        await report(a.rolloutId, a.runId, settled.result, settled.reason);
        return null;
      }
      const file = promotionFile(layout.promotionsDir, a.runId);
      if ((await readJsonState(file, promotionSchema)).status === "missing") {
        // The same JSON as the proving host's, so `promotions list` and `apply` see it; a proposal here.
        const doc: Record<string, unknown> = { ...a.promotion };
        delete doc.state_changed_at;
        delete doc.state_reason;
        await writeJsonAtomic(file, { ...doc, state: "proposed", rollout: { id: a.rolloutId, from_host: a.fromHost } });
      }
      logger.info({ rollout: a.rolloutId, run_id: a.runId }, "rollout: applying this host's assignment");
      return { kind: "apply", promotion: a.runId, by: "rollout", rollout: a.rolloutId };
    },
    /** How a rollout's change went (an outcome, or what it threw): reported to the rollout. Other changes are not its business. */
    async done(request: SettingsRequest, outcome: unknown): Promise<void> {
      if (request.kind !== "apply" || request.by !== "rollout") return;
      const { result, reason } = rolloutResultOf(outcome);
      const gate = typeof outcome === "object" && outcome !== null && "gate" in outcome ? outcome.gate : null;
      // Another host in maintenance (the fleet's slot) or another run on this GPU: a short wait, not a night's.
      if (result === "refused" && (gate === "fleet_slot" || gate === "lock") && lastKey !== null)
        tried.set(lastKey, now().getTime() + BUSY_RETRY_MS);
      await report(request.rollout, request.promotion, result, reason);
    },
  };
}
export type RolloutStep = ReturnType<typeof createRolloutStep>;
