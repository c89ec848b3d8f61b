import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { SpicaGPUAllocation } from "@gpu-canary/spica-evaluator";
import { testdir } from "@gpu-canary/testing";
import { createIntentStore } from "@gpu-canary/tuning";
import { pino } from "pino";
import { metricSourcesFor } from "../metric-sources.ts";
import { createSettingsQueue } from "../settings-changes.ts";
import { createMetrics } from "../metrics.ts";
import { type ServerDeps, buildServer } from "../server.ts";
import { ensureToken } from "../token.ts";

export const silent = pino({ level: "silent" });

/**
 * The daemon's whole server over a fresh KLR_HOME, with the metrics main.ts builds: no GPU
 * (nvidia-smi missing) and no production (a closed port) unless `settings` say otherwise.
 */
export async function fullServer(settings: Record<string, string> = {}, deps: Pick<ServerDeps, "fleet"> = {}) {
  const home = await testdir();
  const config = requireConfig(
    loadConfig({
      env: { KLR_HOME: home, KLR_NVIDIA_SMI: "/nonexistent/nvidia-smi", KLR_VLLM_URL: "http://127.0.0.1:9", ...settings },
      homeDir: home,
    }),
  ).config;
  const layout = layoutFor(config);
  const now = () => new Date();
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const evaluator = new SpicaGPUAllocation({ config, audit });
  const store = createIntentStore({ layout, subsystems: config.subsystems });
  const metrics = createMetrics(metricSourcesFor({ config, context: evaluator.context, store, promotionsDir: layout.promotionsDir, now }));
  const token = await ensureToken(layout.daemonTokenFile);
  let woken = 0;
  const changes = createSettingsQueue();
  const app = buildServer({
    logger: silent,
    now,
    version: "0.2.0",
    config,
    context: evaluator.context,
    audit,
    store,
    metrics,
    token,
    promotionsDir: layout.promotionsDir,
    daemonState: () => ({ working: null }),
    onIntent: () => (woken += 1),
    changes,
    ...deps,
  });
  return { app, home, config, token, audit, layout, store, metrics, changes, woken: () => woken };
}
