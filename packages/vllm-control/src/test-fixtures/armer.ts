// A run in miniature, for the watchdog tests: `armer <setup.json> die|deadline|disarm|restore-then-hang|slow-restore|die-while-restoring`.
// Arms the watchdog, stops production, starts a canary, says "ready", then dies, hangs or restores.
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createVllmClient } from "@gpu-canary/vllm-client";
import { armWatchdog, createProductionService, launchCanary, restoreProduction } from "../index.ts";
import type { RestorePlan, WatchdogLaunch, WhisperBack } from "../index.ts";

interface Setup {
  plan: RestorePlan;
  armFile: string;
  reportPath: string;
  deadlineMs: number;
  restoreEstimateSeconds?: number;
  /** where the watchdog runs (default: detached) */
  launch?: WatchdogLaunch;
  systemdRun?: string;
  /** Whisper runs at a candidate's size: the watchdog is told how to switch it back */
  whisper?: WhisperBack;
  canary: { vllmCommand: string; port: number; utilization: number; env: Record<string, string> };
}

const [setupPath = "", mode = "die"] = process.argv.slice(2);
const setup = JSON.parse(readFileSync(setupPath, "utf8")) as Setup;
const service = createProductionService({
  manager: setup.plan.manager,
  port: setup.plan.port,
  vllmProcess: setup.plan.vllmProcess,
  gpuIndex: 0,
  env: setup.plan.env,
});
const watchdog = await armWatchdog({
  runId: "test-run",
  deadline: new Date(Date.now() + setup.deadlineMs),
  restore: setup.plan,
  armFile: setup.armFile,
  reportPath: setup.reportPath,
  ...(setup.restoreEstimateSeconds !== undefined ? { restoreEstimateSeconds: setup.restoreEstimateSeconds } : {}),
  ...(setup.launch ? { launch: setup.launch } : { useSystemdRun: false }),
  ...(setup.systemdRun ? { systemdRun: setup.systemdRun } : {}),
});
await service.stop(20_000);
const canary = launchCanary({
  vllmCommand: setup.canary.vllmCommand,
  modelPath: "/models/llm/current",
  port: setup.canary.port,
  gpuMemoryUtilization: setup.canary.utilization,
  gpuIndex: 0,
  env: setup.canary.env,
});
await watchdog.setCanary(canary.pgid);
if (setup.whisper) await watchdog.setWhisper(setup.whisper);
process.stdout.write(`ready ${canary.pgid} ${watchdog.mode}\n`);
if (mode === "disarm") {
  // Test the canary for real: a streamed completion, timed.
  const client = createVllmClient({ baseUrl: `http://127.0.0.1:${setup.canary.port}` });
  await client.waitUntilHealthy({ deadlineMs: 30_000 });
  const streamed = await client.streamCompletion({ prompt: "hello", maxTokens: 4, timeoutMs: 10_000 });
  process.stdout.write(`ttft ${streamed.ttftMs?.toFixed(1) ?? "none"} ms\n`);
  await canary.stop();
  await restoreProduction(setup.plan);
  await watchdog.disarm();
  process.stdout.write("restored\n");
} else if (mode === "restore-then-hang") {
  // Production back, the watchdog still armed: the run dies before it could disarm.
  await canary.stop();
  await watchdog.setCanary(null);
  await restoreProduction(setup.plan);
  process.stdout.write("restored\n");
  for (;;) await sleep(1000);
} else if (mode === "slow-restore" || mode === "die-while-restoring") {
  // Production's start is issued and takes longer than the deadline leaves.
  await canary.stop();
  await watchdog.setCanary(null);
  await watchdog.restoring();
  if (mode === "die-while-restoring") {
    const started = service.start(60_000);
    await sleep(500);
    process.stdout.write("starting\n");
    process.kill(process.pid, "SIGKILL");
    await started;
  }
  await restoreProduction(setup.plan);
  await watchdog.disarm();
  process.stdout.write("restored\n");
} else {
  for (;;) await sleep(1000);
}
