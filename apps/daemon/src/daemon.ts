import { setTimeout as sleep } from "node:timers/promises";
import type { AuditFeed } from "@gpu-canary/audit-feed";
import type { Config, Layout } from "@gpu-canary/config";
import { messageOf } from "@gpu-canary/errors";
import { windowAt } from "@gpu-canary/policy";
import { type SpicaGPUAllocation, recoverIfCrashed } from "@gpu-canary/spica-evaluator";
import { type IntentStore, type TuningRunner, createObserver, followLog, lastAppliedAt, workIntent } from "@gpu-canary/tuning";
import type { Logger } from "pino";
import type { Metrics } from "./metrics.ts";
import type { Notifier } from "./notify.ts";
import type { RolloutStep } from "./rollout-step.ts";
import {
  type SettingsQueue,
  type SettingsRequest,
  autoApplyChoice,
  changeChooser,
  createSettingsQueue,
  giveBackBusyTry,
  workChange,
} from "./settings-changes.ts";

/** An intent refused because another run holds the GPU lock is tried again after this long. */
const LOCK_RETRY_MS = 30_000;

export interface DaemonDeps {
  config: Config;
  layout: Layout;
  logger: Logger;
  audit: AuditFeed;
  store: IntentStore;
  runner: TuningRunner;
  evaluator: SpicaGPUAllocation;
  metrics: Metrics;
  notifier: Notifier;
  /** aborted to end a run in progress safely (its reason, a signal name, is the run's) */
  runAbort: AbortController;
  now?: () => Date;
  /** how often the intents folder is looked at (intents written by the CLI) */
  pollMs?: number;
  env?: Record<string, string>;
  /** the settings changes asked for over HTTP (default: its own, empty) */
  changes?: SettingsQueue;
  /**
   * KLR_STATE_URL: copy this host's audit trail to the fleet's database — `afterRun` after each
   * run or settings change, else on a poll (the callee may skip it). Never throws.
   */
  syncAudit?: (reason: "afterRun" | "poll") => Promise<void>;
  /** KLR_STATE_URL: this host's part in the fleet's rollouts, tried before KLR_AUTO_APPLY's choice */
  rollout?: RolloutStep;
}

/**
 * The loop: follow vLLM's log into intents, work intents one at a time through the tuning
 * runner, wait for the window when it refused, recover a crashed run at start, and end a run in
 * progress safely on stop.
 */
export function createDaemon(deps: DaemonDeps) {
  const { config, logger, store, runner, metrics } = deps;
  const now = deps.now ?? (() => new Date());
  const stopping = new AbortController();
  let wake: (() => void) | null = null;
  let deferredUntil = 0;
  let working: string | null = null;
  let loops: Promise<unknown>[] = [];

  const observer = createObserver({
    store,
    audit: deps.audit,
    subsystem: config.subsystems[0] ?? "gpu_allocation",
    now,
    appliedAt: () => lastAppliedAt(deps.layout.appliedFile),
  });

  const onLine = async (line: string) => {
    let event;
    try {
      event = await observer.line(line);
    } catch (error) {
      // An intent that cannot be written is reported, never a reason to stop following.
      metrics.observerErrors.inc();
      logger.error({ err: messageOf(error) }, "could not record an out-of-memory event");
      return;
    }
    if (!event) return;
    metrics.ooms.inc({ kind: event.kind });
    logger.warn({ kind: event.kind, intent: event.intentId, merged: event.merged }, "out-of-memory event in vLLM's log");
    if (event.appliedUnknown !== undefined)
      logger.warn(
        { intent: event.intentId, err: event.appliedUnknown },
        "when production's settings last changed is unknown: the event has an intent of its own",
      );
    wake?.();
  };

  const changes = deps.changes ?? createSettingsQueue();
  const autoTried = new Set<string>();
  // after an auto-apply refused for a busy slot or lock: not asked again before this
  let autoNotBefore = 0;

  /** One settings change, worked like an intent: the run can be ended safely by stop(); its end is notified. */
  const change = async (request: SettingsRequest) => {
    working = request.kind === "apply" ? `apply ${request.promotion}` : "rollback";
    logger.info({ change: request }, "changing production's settings");
    try {
      const outcome = await workChange(deps.evaluator, request).catch(async (error: unknown) => {
        await deps.rollout?.done(request, error);
        throw error;
      });
      await deps.rollout?.done(request, outcome);
      if (giveBackBusyTry(autoTried, request, outcome)) autoNotBefore = now().getTime() + LOCK_RETRY_MS;
      const fields = { run_id: outcome.runId, from: outcome.from, to: outcome.to, reason: outcome.reason, by: request.by };
      logger.info({ status: outcome.status, ...fields }, "settings change finished");
      if (outcome.status === "applied") deps.notifier.send("applied", { kind: request.kind, ...fields });
      else if (outcome.status === "rolled_back") deps.notifier.send("rolled_back", fields);
      else deps.notifier.send("refused", { gate: outcome.gate, ...fields });
    } finally {
      working = null;
    }
  };

  const chosenChange = changeChooser({
    choose: async () =>
      (await deps.rollout?.choice()) ?? (now().getTime() >= autoNotBefore ? await autoApplyChoice(deps.evaluator, autoTried) : null),
    logger,
    notifier: deps.notifier,
  });

  const workLoop = async () => {
    while (!stopping.signal.aborted) {
      try {
        const asked = changes.take() ?? (await chosenChange());
        if (asked) {
          await change(asked);
          await deps.syncAudit?.("afterRun");
          continue;
        }
        await store.expire();
        const claimed = Date.now() >= deferredUntil ? await store.claim() : null;
        if (claimed) {
          working = claimed.intent.id;
          logger.info({ intent: claimed.intent.id, kind: claimed.intent.kind }, "working an intent");
          const { outcome, state, error } = await workIntent({ store, runner }, claimed);
          working = null;
          const result = outcome?.result ?? null;
          if (result) {
            metrics.recordRun(result);
            if (result.promotionPath)
              deps.notifier.send("promotion", { run_id: result.runId, path: result.promotionPath, candidate: result.candidate });
          }
          const status = outcome?.status ?? "error";
          logger.info({ intent: claimed.intent.id, status, state, reason: outcome?.reason ?? error }, "intent worked");
          await deps.syncAudit?.("afterRun");
          const gate = outcome?.gate ?? result?.gate ?? null;
          if (status === "deferred") {
            // Refused by the window (or, for a rollback, tonight's budget): wait for its next opening; by the lock: try again shortly.
            deferredUntil =
              gate === "window" || gate === "budget"
                ? windowAt(config.maintenanceWindow, config.maintenanceTimeZone, now()).opensAt.getTime()
                : now().getTime() + LOCK_RETRY_MS;
            deps.notifier.send("refused", { intent_id: claimed.intent.id, gate: gate ?? "window", reason: outcome?.reason });
          } else if (status === "refused") {
            deps.notifier.send("refused", { intent_id: claimed.intent.id, gate, reason: outcome?.reason });
          } else if (status === "error") {
            deps.notifier.send("fault", { intent_id: claimed.intent.id, reason: outcome?.reason ?? error });
          } else if (status === "rolled_back") {
            deps.notifier.send("rolled_back", { intent_id: claimed.intent.id, reason: outcome?.reason });
          } else {
            deps.notifier.send("run_finished", { intent_id: claimed.intent.id, status, reason: outcome?.reason });
          }
          continue;
        }
      } catch (error) {
        working = null;
        const message = messageOf(error);
        logger.error({ err: message }, "the work loop hit an error");
        deps.notifier.send("fault", { reason: message });
        if (deps.runAbort.signal.aborted) return;
      }
      await deps.syncAudit?.("poll");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deps.pollMs ?? 2000);
        // stop() aborts `stopping` and then calls wake(): no listener per wait is needed.
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = null;
    }
  };

  return {
    /** what the daemon is doing, for /status */
    state: () => ({
      working,
      deferred_until: deferredUntil > Date.now() ? new Date(deferredUntil).toISOString() : null,
      queued_change: changes.queued(),
    }),
    changes,
    wake: () => wake?.(),
    async start() {
      // What a crash left behind first: a crashed run's lock, intents a killed worker held.
      const outcome = await recoverIfCrashed(deps.evaluator.context);
      if (outcome) logger.warn({ action: outcome.action, charged: outcome.chargedSeconds }, outcome.detail);
      const requeued = await store.requeueAbandoned();
      if (requeued > 0) logger.info({ requeued }, "intents a stopped worker held are pending again");
      loops = [
        workLoop(),
        followLog({
          source: config.vllmLog,
          unit: config.vllmService,
          stateDir: deps.layout.maintenanceDir,
          onLine,
          onError: (message) => {
            metrics.observerErrors.inc();
            logger.warn({ source: config.vllmLog.kind }, message);
          },
          onFollowing: ({ path, offset }) => logger.info({ path, offset }, "following vLLM's log"),
          signal: stopping.signal,
          ...(deps.env ? { env: deps.env } : {}),
        }),
      ];
    },
    /** stop taking intents, end a run in progress safely (production restored first), stop following */
    async stop(signal: NodeJS.Signals) {
      stopping.abort();
      if (working) {
        logger.warn({ intent: working, signal }, "ending the run in progress safely");
        deps.runAbort.abort(signal);
      }
      wake?.();
      await Promise.race([Promise.allSettled(loops), sleep((config.restoreSlaSeconds * 4 + 60) * 1000, undefined, { ref: false })]);
    },
  };
}

export type Daemon = ReturnType<typeof createDaemon>;
