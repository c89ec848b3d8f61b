import { type Layout, type LoadedConfig, layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import type { FleetState } from "./fleet.ts";
import type { Io } from "./io.ts";
import type { ProgressSinks } from "./progress.ts";

export interface Settings extends LoadedConfig {
  layout: Layout;
}

/** The validated settings or a SettingsError (exit 2); warnings ("did you mean") go to stderr. */
export function loadSettings(io: Io): Settings {
  const loaded = requireConfig(loadConfig({ env: io.env, homeDir: io.homeDir }));
  for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
  return { ...loaded, layout: layoutFor(loaded.config) };
}

/** The audit feed of these settings; corrupt lines are reported on stderr. */
export async function auditFeedFor(settings: Settings, io: Io) {
  const { createAuditFeed } = await import("@gpu-canary/audit-feed");
  return createAuditFeed({
    dir: settings.layout.auditDir,
    timeZone: settings.config.maintenanceTimeZone,
    now: io.now,
    onWarning: (message) => io.stderr(`warning: ${message}\n`),
  });
}

/** The GPU maintenance lock of these settings, auditing into the feed. */
export async function gpuLockFor(settings: Settings, io: Io, owner: string) {
  const { createGpuLock } = await import("@gpu-canary/gpu-lock");
  return createGpuLock({
    path: settings.layout.gpuLock,
    ttlSeconds: settings.config.lockTtlSeconds,
    owner,
    now: io.now,
    audit: await auditFeedFor(settings, io),
  });
}

/** Environment gpu-canary hands to nvidia-smi, the canary and operator commands: the simulated host's state file, when set. */
export function hostEnv(io: Io): Record<string, string> {
  const simHost = io.env.GPU_CANARY_SIM_HOST;
  return simHost ? { GPU_CANARY_SIM_HOST: simHost } : {};
}

/** Run `work` with the fleet's database open when KLR_STATE_URL is set (null otherwise); the pool is closed at the end. */
export async function withFleet<T>(
  settings: Settings,
  io: Io,
  options: { waitSeconds?: number },
  work: (fleet: FleetState | null) => Promise<T>,
): Promise<T> {
  if (settings.config.stateUrl === undefined) return work(null);
  const { openFleet } = await import("./fleet.ts");
  const fleet = await openFleet(settings, io, options);
  let failure: unknown;
  try {
    return await work(fleet);
  } catch (error) {
    failure = error;
    throw error;
  } finally {
    await fleet?.close(failure);
  }
}

/**
 * The evaluator of these settings; a signal aborts a run safely (production restored first). With
 * `fleet` (KLR_STATE_URL, fleet.ts), budget and rate limits live in the fleet's database and
 * quiesced runs and applies take a fleet maintenance slot.
 */
export async function evaluatorFor(
  settings: Settings,
  io: Io,
  options: { owner: string; signal?: AbortSignal; progress?: ProgressSinks; fleet?: FleetState | null },
) {
  const { SpicaGPUAllocation } = await import("@gpu-canary/spica-evaluator");
  return new SpicaGPUAllocation({
    config: settings.config,
    layout: settings.layout,
    now: io.now,
    env: hostEnv(io),
    audit: await auditFeedFor(settings, io),
    owner: options.owner,
    ...(options.fleet ? { stores: options.fleet.stores, fleet: options.fleet.gate } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    ...options.progress,
  });
}
