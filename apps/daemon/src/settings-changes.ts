import { GpuCanaryError } from "@gpu-canary/errors";
import { windowAt } from "@gpu-canary/policy";
import { type SettingsChangeOutcome, type SpicaGPUAllocation, listPromotions, readApplied } from "@gpu-canary/spica-evaluator";

/** A change of production's settings the daemon was asked for (POST) or chose itself (KLR_AUTO_APPLY). */
export type SettingsRequest = { kind: "apply"; promotion: string; by: "api" | "auto" } | { kind: "rollback"; by: "api" };

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
 * KLR_AUTO_APPLY's choice, while the window is open: the newest proposed promotion, unless it is what
 * production has applied, and at most one try per promotion a night (a refusal waits for the next).
 */
export async function autoApplyChoice(evaluator: SpicaGPUAllocation, tried: Set<string>): Promise<SettingsRequest | null> {
  const { config, layout, now } = evaluator.context;
  if (!config.autoApply || config.vllmConfigFile === undefined) return null;
  const window = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, now());
  if (!window.open) return null;
  const listing = await listPromotions(layout.promotionsDir);
  const newest = listing.promotions.filter((p) => p.state === "proposed").at(-1);
  if (!newest) return null;
  const applied = await readApplied(layout.appliedFile);
  if (applied?.promotion_run_id === newest.run_id || applied?.vllm_memory_util === newest.candidate.vllm_memory_util) return null;
  const key = `${newest.run_id}@${window.night}`;
  if (tried.has(key)) return null;
  tried.add(key);
  return { kind: "apply", promotion: newest.run_id, by: "auto" };
}
