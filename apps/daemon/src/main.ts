import { homedir, hostname } from "node:os";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { type Config, type Layout, layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { GpuCanaryError, exitCodeOf } from "@gpu-canary/errors";
import { SpicaGPUAllocation, localStoresOf } from "@gpu-canary/spica-evaluator";
import { createIntentStore, createTuningRunner } from "@gpu-canary/tuning";
import type { pino } from "pino";
import { VERSION } from "./args.ts";
import { createDaemon } from "./daemon.ts";
import { warnOnceWhileFailing } from "./failure-warning.ts";
import { fleetOverviewFor, hostPublisher } from "./host-publisher.ts";
import { createDaemonLogger, logSinkFor } from "./logger.ts";
import { metricSourcesFor } from "./metric-sources.ts";
import { createMetrics } from "./metrics.ts";
import { createNotifier } from "./notify.ts";
import { createRolloutStep, rolloutFleetFor } from "./rollout-step.ts";
import { buildServer } from "./server.ts";
import { ensureToken } from "./token.ts";

/**
 * gpu-canaryd: validate settings, recover what a crash left, follow vLLM's log into intents,
 * work them one at a time, serve the API on KLR_DAEMON_LISTEN; on SIGTERM/SIGINT end a run in
 * progress safely (production restored), flush and exit 0.
 */
export async function main(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const logger = await createDaemonLogger(logSinkFor(process.stderr, env));
  try {
    return await run(env, logger);
  } catch (error) {
    if (error instanceof GpuCanaryError) {
      logger.error({ code: error.code, hint: error.hint }, error.message);
      logger.flush();
      return exitCodeOf(error.kind);
    }
    throw error;
  }
}

async function run(env: Readonly<Record<string, string | undefined>>, logger: pino.Logger): Promise<number> {
  const settings = requireConfig(loadConfig({ env, homeDir: homedir() }));
  for (const warning of settings.warnings) logger.warn(warning);
  const config = settings.config;
  const layout = layoutFor(config);
  const now = () => new Date();
  // The simulated host's nvidia-smi and vLLM find their state through this variable (demo, tests).
  const hostEnv: Record<string, string> = env.GPU_CANARY_SIM_HOST ? { GPU_CANARY_SIM_HOST: env.GPU_CANARY_SIM_HOST } : {};
  const audit = createAuditFeed({
    dir: layout.auditDir,
    timeZone: config.maintenanceTimeZone,
    now,
    onWarning: (message) => logger.warn(message),
  });
  // KLR_STATE_URL: budget and rate limits in the fleet's database, a fleet slot for each quiesced run
  // and apply; a missing or newer schema refuses the start (exit 3). `pg` is loaded only then.
  const fleet = await fleetFor(config, layout, logger, now);
  const syncAudit = fleet ? auditSyncFor(fleet.syncAudit, logger) : undefined;
  const runAbort = new AbortController();
  const evaluator = new SpicaGPUAllocation({
    ...(fleet ? { stores: fleet.stores, fleet: fleet.gate } : {}),
    config,
    layout,
    audit,
    now,
    env: hostEnv,
    owner: "gpu-canaryd",
    signal: runAbort.signal,
    onProgress: (line) => logger.info({ progress: true }, line),
  });
  const store = createIntentStore({ layout, subsystems: config.subsystems, now });
  const runner = createTuningRunner({ config, evaluator, audit, promotionsDir: layout.promotionsDir });
  const metrics = createMetrics(metricSourcesFor({ config, context: evaluator.context, store, promotionsDir: layout.promotionsDir, now }));
  const notifier = createNotifier({ url: config.notifyUrl, logger, host: hostname() });
  const daemon = createDaemon({
    config,
    layout,
    logger,
    audit,
    store,
    runner,
    evaluator,
    metrics,
    notifier,
    runAbort,
    now,
    env: hostEnv,
    ...(syncAudit ? { syncAudit } : {}),
    ...(fleet ? { rollout: createRolloutStep({ evaluator, fleet: fleet.rollout, logger, audit }) } : {}),
  });
  const token = await ensureToken(layout.daemonTokenFile);
  const app = buildServer({
    logger,
    now,
    version: VERSION,
    config,
    context: evaluator.context,
    audit,
    store,
    metrics,
    token,
    promotionsDir: layout.promotionsDir,
    daemonState: daemon.state,
    onIntent: daemon.wake,
    changes: daemon.changes,
    ...(fleet ? { fleet: fleet.overview } : {}),
  });
  // Persistent listeners, never `once` nor removed: execa's signal-exit, while a child runs, re-raises a
  // signal with its default action (death, exit 143) when it finds no listener but its own — which a
  // `once` listener would leave it, having removed itself. A second signal cannot hurry the safe stop.
  let stopping: NodeJS.Signals | null = null;
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal, stopping }, "already stopping: the run in progress ends safely first");
        return;
      }
      stopping = signal;
      resolve(signal);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
  // Recovery first: a crashed run's production comes back before anything new starts.
  await daemon.start();
  const { host, port } = config.daemonListen;
  await app.listen({ host, port });
  // what recovery wrote, and this host's summary, reach the fleet now, not after a first long run
  await syncAudit?.("afterRun");
  logger.info({ mode: config.canaryMode, log: config.vllmLog.kind }, "working");
  const signal = await stopped;
  logger.info({ signal }, "stopping");
  await daemon.stop(signal);
  // close() reaps only the connections idle when it starts: one answering a request then would hold
  // the stop for its keep-alive time (72 s) after its answer.
  const reaper = setInterval(() => app.server.closeIdleConnections(), 250);
  await app.close().finally(() => clearInterval(reaper));
  await notifier.flush();
  // what the last run wrote reaches the fleet's trail before the pool ends
  await syncAudit?.("afterRun");
  await fleet?.close();
  logger.info("stopped");
  logger.flush();
  return 0;
}

async function fleetFor(config: Config, layout: Layout, logger: pino.Logger, now: () => Date) {
  if (config.stateUrl === undefined) return null;
  const store = await import("@gpu-canary/fleet-store");
  const pool = store.createFleetPool(config.stateUrl, { applicationName: `gpu-canaryd ${config.hostId}` });
  try {
    await store.checkSchema(pool);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw error;
  }
  await store.touchHost(pool, config.hostId);
  logger.info({ database: store.describeDatabase(pool), host_id: config.hostId }, "fleet database");
  const local = localStoresOf(layout);
  const slots = store.createFleetSlots({ pool, hostId: config.hostId, maxConcurrent: config.fleetMaxConcurrent });
  const publish = hostPublisher({ store, pool, config, layout, logger, now });
  return {
    stores: {
      budget: store.mirroredBudgetStore(store.pgBudgetStore(pool, config.hostId), local.budget),
      rateLimits: store.mirroredStore(store.pgRateLimitStore(pool, config.hostId), local.rateLimits),
    },
    gate: store.createRunGate(slots, { onRenewError: (error) => logger.warn({ err: error }, "the fleet slot could not be renewed") }),
    // the host's summary (promotions, applied settings, last run) follows each copy of its trail
    syncAudit: async () => {
      const copied = await store.syncAudit(pool, { hostId: config.hostId, auditDir: layout.auditDir });
      await publish();
      return copied;
    },
    overview: fleetOverviewFor({ store, pool, config, now }),
    rollout: rolloutFleetFor(store, pool, config.hostId),
    close: () => pool.end().catch(() => undefined),
  };
}

/** On a poll, this host's audit trail is copied at most this often (after a run, always). */
const AUDIT_SYNC_POLL_MS = 15_000;

/**
 * The daemon's copy of its audit trail to the fleet's database: best effort (the local files are
 * the record; the next copy catches up), one warning when it starts failing, one line when it
 * works again.
 */
function auditSyncFor(sync: () => Promise<number>, logger: pino.Logger) {
  let lastTry = Number.NEGATIVE_INFINITY;
  const copying = warnOnceWhileFailing(logger, {
    failing: "this host's audit trail could not be copied to the fleet database; the next copy catches up",
    again: "this host's audit trail is copied to the fleet database again",
  });
  return async (reason: "afterRun" | "poll"): Promise<void> => {
    if (reason === "poll" && Date.now() - lastTry < AUDIT_SYNC_POLL_MS) return;
    lastTry = Date.now();
    try {
      copying.worked({ copied: await sync() });
    } catch (error) {
      copying.failed(error);
    }
  };
}
