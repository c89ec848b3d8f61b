import type { AuditFeed } from "@gpu-canary/audit-feed";
import { type Config, type Layout, portOfUrl } from "@gpu-canary/config";
import { type GpuLock, createGpuLock } from "@gpu-canary/gpu-lock";
import { type GpuProbe, createGpuProbe } from "@gpu-canary/gpu-probe";
import {
  type BudgetStoreFor,
  type DowntimeBudget,
  type JsonStore,
  type RateLimiter,
  type RateLimitsFile,
  createDowntimeBudget,
  createRateLimiter,
  fileBudgetStore,
  fileRateLimitStore,
} from "@gpu-canary/policy";
import { type VllmClient, createVllmClient } from "@gpu-canary/vllm-client";
import { type RestorePlan, type ServiceManager, createProductionService } from "@gpu-canary/vllm-control";
import type { FleetGate } from "./fleet-gate.ts";

/** Everything a run touches, built once from the settings; tests inject the clock, paths and processes through these. */
export interface RunContext {
  config: Config;
  layout: Layout;
  /** rule time (window, budget night, rate limits); durations are measured on the real clock */
  now: () => Date;
  audit: AuditFeed;
  lock: GpuLock;
  probe: GpuProbe;
  budget: DowntimeBudget;
  rate: RateLimiter;
  production: VllmClient;
  /** KLR_STATE_URL set: a quiesced run or an apply takes one of the fleet's maintenance slots (fleet-gate.ts) */
  fleet?: FleetGate;
  /** extra environment for operator commands, the canary and nvidia-smi (the simulated host's state file) */
  env: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: (line: string) => void;
  /**
   * each step of a run (and each undo) as it starts, with the phase it journals: given, it takes
   * the steps' own lines, which otherwise go to onProgress — so a log can say where a run is
   */
  onStep?: (phase: string, line: string | null) => void;
  /** the restore watchdog as a transient systemd unit (default: when systemd runs) */
  useSystemdRun?: boolean;
  /** between two nvidia-smi readings of a started Whisper's memory (default 1 s) */
  whisperPollMs?: number;
}

export function managerOf(config: Config): ServiceManager {
  return config.serviceManager === "systemd"
    ? { kind: "systemd", unit: config.vllmService }
    : {
        kind: "command",
        ...(config.productionStopCommand ? { stopCommand: config.productionStopCommand } : {}),
        ...(config.productionStartCommand ? { startCommand: config.productionStartCommand } : {}),
      };
}

export function productionServiceOf(ctx: Pick<RunContext, "config" | "probe" | "env">) {
  return createProductionService({
    manager: managerOf(ctx.config),
    port: portOfUrl(ctx.config.vllmUrl),
    vllmProcess: ctx.config.vllmProcess,
    gpuIndex: ctx.config.productionGpuId,
    probe: ctx.probe,
    env: ctx.env,
  });
}

/** How to bring production back; the watchdog carries it, so it is plain data. */
export function restorePlanOf(config: Config, env: Record<string, string>, quiesce = config.quiesce): RestorePlan {
  return {
    quiesce,
    manager: managerOf(config),
    vllmUrl: config.vllmUrl,
    ...(config.vllmApiKey ? { apiKey: config.vllmApiKey } : {}),
    port: portOfUrl(config.vllmUrl),
    vllmProcess: config.vllmProcess,
    gpuIndex: config.productionGpuId,
    // Keep trying well past the SLA: a slow production is still brought back (and the overrun recorded).
    serveTimeoutMs: Math.max(4 * config.restoreSlaSeconds, 60) * 1000,
    env,
    nvidiaSmi: config.nvidiaSmi,
  };
}

/** Where the budget and the rate limits are kept: files under KLR_HOME, or (KLR_STATE_URL) the fleet's database mirrored to them. */
export interface PolicyStores {
  budget: BudgetStoreFor;
  rateLimits: JsonStore<RateLimitsFile>;
}

/** The files under KLR_HOME: the default, and the local copy a fleet's stores keep equal to the database. */
export function localStoresOf(layout: Layout): PolicyStores {
  return { budget: fileBudgetStore(layout.budgetFile), rateLimits: fileRateLimitStore(layout.rateLimits) };
}

export function policyOf(
  config: Config,
  layout: Layout,
  now: () => Date,
  stores: PolicyStores = localStoresOf(layout),
): { budget: DowntimeBudget; rate: RateLimiter } {
  return {
    budget: createDowntimeBudget({ storeFor: stores.budget, maxSeconds: config.maxDowntimeSeconds, now }),
    rate: createRateLimiter({
      store: stores.rateLimits,
      rule: { maxRuns: config.rateLimitMaxRuns, windowHours: config.rateLimitWindowHours, cooldownHours: config.rateLimitCooldownHours },
      now,
      timeZone: config.maintenanceTimeZone,
    }),
  };
}

/**
 * What a status reads of a run's context — the lock, nvidia-smi, production, the budget and the rate
 * limits — built as a run builds them; `gpu-canary status` takes these alone, without loading a run's code.
 */
export function statusContextOf(options: {
  config: Config;
  layout: Layout;
  now: () => Date;
  audit: AuditFeed;
  env: Record<string, string>;
  owner: string;
  probe?: GpuProbe;
  stores?: PolicyStores;
}): Pick<RunContext, "config" | "now" | "lock" | "probe" | "production" | "budget" | "rate"> {
  const { config, layout, now, audit, env } = options;
  return {
    config,
    now,
    lock: createGpuLock({ path: layout.gpuLock, ttlSeconds: config.lockTtlSeconds, owner: options.owner, now, audit }),
    probe: options.probe ?? createGpuProbe({ executable: config.nvidiaSmi, env }),
    production: productionClient(config),
    ...policyOf(config, layout, now, options.stores),
  };
}

export function productionClient(config: Config): VllmClient {
  return createVllmClient({ baseUrl: config.vllmUrl, ...(config.vllmApiKey ? { apiKey: config.vllmApiKey } : {}) });
}

export function canaryUrl(config: Pick<Config, "canaryPort">): string {
  return `http://127.0.0.1:${config.canaryPort}`;
}

export function canaryClient(config: Config): VllmClient {
  return createVllmClient({
    baseUrl: canaryUrl(config),
    ...(config.vllmApiKey ? { apiKey: config.vllmApiKey } : {}),
  });
}
