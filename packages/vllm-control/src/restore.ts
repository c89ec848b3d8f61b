import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type GpuProbe, createGpuProbe } from "@gpu-canary/gpu-probe";
import { createVllmClient } from "@gpu-canary/vllm-client";
import { createProductionService, type ServiceManager } from "./production-service.ts";
import { writeVllmConfig } from "./vllm-config-file.ts";

/**
 * An apply's way back: production's config file is put back as it was before production starts,
 * and production counts as restored only when it serves with that file's utilization.
 */
export interface SettingsRestore {
  /** production's --config file (KLR_VLLM_CONFIG) */
  configPath: string;
  /** the copy to put back: a file in the history, which nothing changes */
  restoreFrom: string;
  /** what production served with before the apply (its vllm:cache_config_info) */
  gpuMemoryUtilization: number;
}

/** What it takes to bring production back: serializable, so the watchdog can carry it. */
export interface RestorePlan {
  quiesce: "stop" | "sleep";
  manager: ServiceManager;
  vllmUrl: string;
  apiKey?: string;
  /** production's port, to see it listen */
  port: number;
  vllmProcess: string;
  gpuIndex: number;
  /** how long to keep trying until production serves a completion */
  serveTimeoutMs: number;
  env?: Record<string, string>;
  /** an apply in progress: the settings to go back to (quiesce is "stop") */
  settings?: SettingsRestore;
  /** KLR_NVIDIA_SMI: a stop here waits until production's GPU memory is given back, as the run's own stop does */
  nvidiaSmi?: string;
}

/**
 * nvidia-smi for a restore's stop: an engine that closed its port but still holds the card would
 * make the start beside it fail. Unanswered, the stop waits for the port alone, as without a probe.
 */
function stopProbe(plan: RestorePlan): GpuProbe | undefined {
  if (!plan.nvidiaSmi) return undefined;
  const probe = createGpuProbe({ executable: plan.nvidiaSmi, ...(plan.env ? { env: plan.env } : {}) });
  return { ...probe, report: () => probe.report().catch(() => ({ gpus: [], unmatchedProcesses: [], reservedKnown: false })) };
}

const serviceOf = (plan: RestorePlan) =>
  createProductionService({
    manager: plan.manager,
    port: plan.port,
    vllmProcess: plan.vllmProcess,
    gpuIndex: plan.gpuIndex,
    env: plan.env,
    probe: stopProbe(plan),
  });

/** Put production's config file back as the restore plan says (before production starts). */
export async function putBackSettings(settings: SettingsRestore): Promise<void> {
  await writeVllmConfig(settings.configPath, await readFile(settings.restoreFrom, "utf8"));
}

/** The utilization production serves with, from its /metrics; null when it does not say. */
export async function servedUtilization(plan: Pick<RestorePlan, "vllmUrl" | "apiKey">, timeoutMs = 3000): Promise<number | null> {
  const client = createVllmClient({ baseUrl: plan.vllmUrl, ...(plan.apiKey ? { apiKey: plan.apiKey } : {}) });
  return client.servedUtilization(timeoutMs).catch(() => null);
}

/** Whether production answers a real completion now (a quick look, not a wait). */
export async function productionServes(plan: RestorePlan, timeoutMs: number): Promise<boolean> {
  const client = createVllmClient({ baseUrl: plan.vllmUrl, ...(plan.apiKey ? { apiKey: plan.apiKey } : {}) });
  try {
    await client.servesCompletion({ timeoutMs });
    return true;
  } catch {
    return false;
  }
}

/**
 * Bring production back after a quiesce: wake it (sleep mode) or start it, then wait until it
 * serves a real completion — health alone proves nothing. Returns when it serves; with an apply's
 * settings, only when it serves their utilization (a start that did nothing — the unit was running
 * the new file — is not a restore).
 */
export async function restoreProduction(plan: RestorePlan, signal?: AbortSignal): Promise<{ servingAt: Date; seconds: number }> {
  const started = Date.now();
  const client = createVllmClient({ baseUrl: plan.vllmUrl, ...(plan.apiKey ? { apiKey: plan.apiKey } : {}) });
  if (plan.quiesce === "sleep") {
    await client.wakeUp(plan.serveTimeoutMs);
  } else {
    if (plan.settings) await putBackSettings(plan.settings);
    await serviceOf(plan).start(plan.serveTimeoutMs);
  }
  const deadline = started + plan.serveTimeoutMs;
  let lastError: unknown = null;
  while (Date.now() < deadline) {
    signal?.throwIfAborted();
    try {
      await client.waitUntilHealthy({ deadlineMs: Math.max(100, deadline - Date.now()), ...(signal ? { signal } : {}) });
      await client.servesCompletion({ timeoutMs: Math.max(1000, Math.min(10_000, deadline - Date.now())) });
      const servingAt = new Date();
      if (plan.settings) {
        const served = await servedUtilization(plan);
        if (served !== plan.settings.gpuMemoryUtilization)
          throw new Error(
            `production serves gpu_memory_utilization ${served ?? "(not in its /metrics)"}, not ${plan.settings.gpuMemoryUtilization} from ${plan.settings.restoreFrom}`,
          );
      }
      return { servingAt, seconds: (servingAt.getTime() - started) / 1000 };
    } catch (error) {
      lastError = error;
      await sleep(100);
    }
  }
  throw lastError instanceof Error ? lastError : new Error(`production did not serve within ${plan.serveTimeoutMs} ms`);
}

export interface Restored {
  servingAt: Date;
  seconds: number;
  /** production already served: nothing was started (a second start could launch a second instance) */
  alreadyServing: boolean;
}

/**
 * Restore production unless it already serves — the run's undo, `recover` and the watchdog all
 * restore this way. `serving` is how to tell (default: a quick completion, asked only of a stopped
 * production: waking an awake vLLM is harmless, and a probe of a sleeping one may hang); `starting`
 * runs just before a start is issued (the watchdog is told, so it never issues a second). With an
 * apply's settings, production is left alone only when its /metrics show their utilization;
 * anything else — serving the new file, still loading it, hung — is stopped before the start.
 */
export async function restoreUnlessServing(
  plan: RestorePlan,
  options: { serving?: () => Promise<boolean>; starting?: () => Promise<void> } = {},
): Promise<Restored> {
  if (plan.settings) {
    if ((await servedUtilization(plan)) === plan.settings.gpuMemoryUtilization) {
      // Serving as before, but the file may already be the new one (a run that died just after writing it).
      await putBackSettings(plan.settings);
      return { servingAt: new Date(), seconds: 0, alreadyServing: true };
    }
    // A start of a running unit does nothing, and a second start command a second instance: it goes first.
    await serviceOf(plan).stop(plan.serveTimeoutMs);
  } else {
    const serving = options.serving ?? (async () => plan.quiesce === "stop" && (await productionServes(plan, 3000)));
    if (await serving()) return { servingAt: new Date(), seconds: 0, alreadyServing: true };
  }
  await options.starting?.();
  return { ...(await restoreProduction(plan)), alreadyServing: false };
}
