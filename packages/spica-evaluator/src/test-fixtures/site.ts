import { type Config, layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { nightOf } from "@gpu-canary/policy";
import { testdir } from "@gpu-canary/testing";
import { type SimSite, type SimSiteOptions, createSimSite } from "@gpu-canary/vllm-sim";
import { onTestFinished } from "vitest";
import { SpicaGPUAllocation, type SpicaOptions } from "../spica-gpu-allocation.ts";

/** A simulated site with production serving, and an evaluator built from its settings. */
export async function site(options: SimSiteOptions & { production?: boolean } = {}) {
  const s: SimSite = await createSimSite(await testdir(), options);
  onTestFinished(() => s.cleanup());
  if (options.production !== false) await s.startProduction();
  const config: Config = requireConfig(loadConfig({ env: s.env, homeDir: s.home })).config;
  const evaluator = (over: Partial<SpicaOptions> = {}, env: Record<string, string> = {}) =>
    new SpicaGPUAllocation({
      config,
      env: { GPU_CANARY_SIM_HOST: s.hostFile, ...env },
      useSystemdRun: false,
      ...over,
    });
  /** The night a run at `at` charges: the product's own rule, never a UTC date. */
  const night = (at = new Date()) => nightOf(config.maintenanceWindow, config.maintenanceTimeZone, at);
  return { ...s, config, layout: layoutFor(config), evaluator, night };
}
