import { spawn } from "node:child_process";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { nightOf } from "@gpu-canary/policy";
import { testdir } from "@gpu-canary/testing";
import { type SimSiteOptions, createSimSite } from "@gpu-canary/vllm-sim";
import { onTestFinished } from "vitest";
import { cli } from "./cli.ts";
import { shippedArgs } from "./shipped.ts";

/** The candidate the evaluate tests try: it fits the simulated host. */
export const candidate = JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "small" });

/** A simulated host (production serving unless told not), its files, its audit and the CLI against it; cleaned up after the test. */
export async function simSite(production = true, options: SimSiteOptions = {}) {
  const site = await createSimSite(await testdir(), options);
  onTestFinished(() => site.cleanup());
  if (production) await site.startProduction();
  const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
  const layout = layoutFor(config);
  // The window is open around the test, so tonight is the night the run charges.
  const night = nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date());
  const files = {
    lock: layout.gpuLock,
    budget: layout.budgetFile(night),
    report: layout.watchdogReport,
  };
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const events = () => audit.query();
  const run = (argv: string[]) => cli(argv, site.env, new Date().toISOString());
  const serves = () =>
    fetch(`${site.env.KLR_VLLM_URL}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prompt: "ping", max_tokens: 1, model: site.modelPath }),
    }).then(
      (r) => r.ok,
      () => false,
    );
  return { site, files, events, run, serves };
}

/** `gpu-canary evaluate` as a real process, its stdout and stderr pipes (as under cron or systemd), to be signalled mid-run. */
export function evaluateProcess(env: Record<string, string>, what = candidate, flags = ["--json"]) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
  const child = spawn(process.execPath, shippedArgs(["evaluate", "--candidate", what, ...flags]), {
    env: { ...clean, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  onTestFinished(() => void child.kill("SIGKILL"));
  return { child, exited, output: () => ({ stdout, stderr }) };
}
