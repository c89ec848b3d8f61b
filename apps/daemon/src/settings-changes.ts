import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import { windowAt } from "@gpu-canary/policy";
import {
  type Fingerprint,
  type SettingsChangeOutcome,
  type SpicaGPUAllocation,
  hostFingerprint,
  listPromotions,
  provenHere,
  rankPromotions,
  readApplied,
} from "@gpu-canary/spica-evaluator";
import type { Logger } from "pino";
import { warnOnceWhileFailing } from "./failure-warning.ts";
import type { Notifier } from "./notify.ts";

/** A change of production's settings the daemon was asked for (POST, a fleet rollout) or chose itself (KLR_AUTO_APPLY). */
export type SettingsRequest =
  | { kind: "apply"; promotion: string; by: "api" | "auto" }
  | { kind: "apply"; promotion: string; by: "rollout"; rollout: string }
  | { kind: "rollback"; by: "api" };

/**
 * One change at a time, worked by the daemon's loop between intents. A second request while one
 * waits is refused (409): two changes queued could undo each other, and the operator decides the order.
 */
export function createSettingsQueue() {
  let queued: SettingsRequest | null = null;
  return {
    /** what waits, for /status */
    queued: () => queued,
    add(request: SettingsRequest): void {
      if (queued)
        throw new GpuCanaryError(
          "CHANGE_QUEUED",
          `${queued.kind === "apply" ? `an apply of ${queued.promotion}` : "a rollback"} is queued already`,
          { kind: "refused", hint: "wait for it to be worked (GET /status shows it), then ask again" },
        );
      queued = request;
    },
    take(): SettingsRequest | null {
      const next = queued;
      queued = null;
      return next;
    },
  };
}
export type SettingsQueue = ReturnType<typeof createSettingsQueue>;

/** Do the change: the evaluator's apply or rollback, gated and verified as from the CLI. */
export function workChange(evaluator: SpicaGPUAllocation, request: SettingsRequest): Promise<SettingsChangeOutcome> {
  return request.kind === "apply" ? evaluator.apply(request.promotion) : evaluator.rollback();
}

/**
 * KLR_AUTO_APPLY's choice, while the window is open: the best proposed promotion for this host by its
 * canary's evidence (rankPromotions: fewer preemptions, more KV-cache headroom, lower TTFT then ITL
 * p95, the newer), unless it is what production has applied, and at most one try per promotion a night
 * (a refusal waits for the next). A promotion whose fingerprint differs from the host is passed over, as
 * apply would refuse it; each is checked against the host once a night (`tried` remembers it), so
 * nvidia-smi is not asked at every poll. A host that cannot be fingerprinted is not known to differ:
 * apply's own check then speaks.
 */
export async function autoApplyChoice(evaluator: SpicaGPUAllocation, tried: Set<string>): Promise<SettingsRequest | null> {
  const { config, layout, now } = evaluator.context;
  if (!config.autoApply || config.vllmConfigFile === undefined) return null;
  const window = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, now());
  if (!window.open) return null;
  const listing = await listPromotions(layout.promotionsDir);
  const ranked = rankPromotions(listing.promotions.filter((p) => p.state === "proposed"));
  if (ranked.length === 0) return null;
  const applied = await readApplied(layout.appliedFile);
  let here: Fingerprint | null | undefined;
  for (const promotion of ranked) {
    const elsewhere = `elsewhere:${promotion.run_id}@${window.night}`;
    const checked = `here:${promotion.run_id}@${window.night}`;
    if (tried.has(elsewhere)) continue;
    if (!tried.has(checked)) {
      here ??= await hostFingerprint(evaluator.context).catch(() => null);
      if (here !== null && !provenHere(promotion, here)) {
        tried.add(elsewhere);
        continue;
      }
      tried.add(checked);
    }
    if (applied?.promotion_run_id === promotion.run_id || applied?.vllm_memory_util === promotion.candidate.vllm_memory_util) return null;
    const key = `${promotion.run_id}@${window.night}`;
    if (tried.has(key)) return null;
    tried.add(key);
    return { kind: "apply", promotion: promotion.run_id, by: "auto" };
  }
  return null;
}

/**
 * An auto-apply refused because another host of the fleet held the maintenance slot or another run
 * held the GPU lock: the night's try is given back (the caller waits a little before asking again),
 * as a slot taken by the host before it in the fleet frees within minutes. True when it was.
 */
export function giveBackBusyTry(tried: Set<string>, request: SettingsRequest, outcome: SettingsChangeOutcome): boolean {
  if (request.kind !== "apply" || request.by !== "auto" || outcome.status !== "refused") return false;
  if (outcome.gate !== "fleet_slot" && outcome.gate !== "lock") return false;
  for (const key of tried) if (key.startsWith(`${request.promotion}@`)) tried.delete(key);
  return true;
}

/**
 * The change the daemon chooses itself (a fleet rollout's part, else KLR_AUTO_APPLY's), asked at each
 * poll. A choice that fails — applied.json unreadable, say — answers null, so the intents are worked
 * meanwhile instead of the loop stopping at it every poll; it is warned about and notified once while
 * it fails, and said again when a choice works.
 */
export function changeChooser(deps: {
  choose: () => Promise<SettingsRequest | null>;
  logger: Logger;
  notifier: Pick<Notifier, "send">;
}): () => Promise<SettingsRequest | null> {
  const choosing = warnOnceWhileFailing(deps.logger, {
    failing:
      "no settings change could be chosen (a fleet rollout's part, KLR_AUTO_APPLY) until this is fixed; intents are worked meanwhile",
    again: "settings changes are chosen again",
  });
  return async () => {
    try {
      const chosen = await deps.choose();
      choosing.worked();
      return chosen;
    } catch (error) {
      if (choosing.failed(error)) deps.notifier.send("fault", { reason: `no settings change could be chosen: ${messageOf(error)}` });
      return null;
    }
  };
}
