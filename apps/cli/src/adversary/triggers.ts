import { type FSWatcher, existsSync, mkdirSync, statSync, watch } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CLI_BIN, DAEMON_BIN, type Proc, exitText, spawnTs } from "./processes.ts";
import { type Scenario, launcherMarker } from "./scenarios.ts";
import type { RowSite } from "./site.ts";

const TRIGGER_POLL_MS = 20;
const CANDIDATE = JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "small" });
// vLLM's KV-cache out-of-memory line: what makes the daemon start a tuning run.
const OOM_LINE =
  "(EngineCore_DP0 pid=7) ERROR 11-28 03:10:00 [core.py:396] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n";

/** Poll `check` until it answers true; fail naming `what` past the deadline or once `signal` aborts. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  options: { timeoutMs: number; signal: AbortSignal; pollMs?: number },
): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    if (await check()) return;
    if (options.signal.aborted) throw new Error(`row timed out waiting for ${what}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 50));
  }
}

/** Settle with `promise`, or fail once the row's signal aborts. */
export function within<T>(promise: Promise<T>, signal: AbortSignal, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error(`row timed out waiting for ${what}`));
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

const healthy = (port: number) =>
  fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(200) }).then(
    (r) => r.ok,
    () => false,
  );

/** Start the row's run: `gpu-canary evaluate --mode canary`, or gpu-canaryd fed an out-of-memory line. */
export async function startRun(scenario: Scenario, site: RowSite, env: Record<string, string>, signal: AbortSignal): Promise<Proc> {
  if (scenario.target === "evaluate") return spawnTs(CLI_BIN, ["evaluate", "--candidate", CANDIDATE, "--mode", "canary", "--json"], env);
  const log = join(site.sim.dir, "vllm.log");
  await writeFile(log, "INFO 11-28 03:00:00 [api_server.py] Starting vLLM API server 0\n");
  const daemon = spawnTs(DAEMON_BIN, [], { ...env, KLR_VLLM_LOG: log });
  try {
    await waitFor(() => daemon.stderr().includes("Server listening") || daemon.ended() !== null, "gpu-canaryd to listen", {
      timeoutMs: 40_000,
      signal,
    });
  } catch (error) {
    daemon.dispose();
    throw error;
  }
  await writeFile(log, OOM_LINE, { flag: "a" });
  return daemon;
}

async function reached(scenario: Scenario, site: RowSite): Promise<boolean> {
  const trigger = scenario.trigger;
  switch (trigger.kind) {
    case "event":
      return (await site.audit.query({ event: trigger.event })).length > 0;
    case "canary_healthy":
      return healthy(site.sim.canaryPort);
    case "production_start":
      return site.starts().length > 0;
    case "launcher":
      return existsSync(launcherMarker(site));
  }
}

/**
 * Checks the trigger at most one at a time, sending the signal on the first that finds it. A check
 * asked for while one runs is run after it: the change that asked may have come too late for it.
 */
function triggerChecker(scenario: Scenario, site: RowSite, run: Proc) {
  let sentAt: number | null = null;
  let running: Promise<void> | null = null;
  let again = false;
  const once = async () => {
    if (sentAt !== null || !(await reached(scenario, site))) return;
    sentAt = scenario.trigger.kind === "launcher" ? statSync(launcherMarker(site)).mtimeMs : Date.now();
    // The launcher's canary command sent the signal itself.
    if (scenario.trigger.kind !== "launcher") run.child.kill(scenario.signal);
  };
  const check = async (): Promise<number | null> => {
    if (running) {
      again = true;
      await running;
      return sentAt;
    }
    do {
      again = false;
      running = once().finally(() => (running = null));
      await running;
    } while (again && sentAt === null);
    return sentAt;
  };
  return { check, sentAt: () => sentAt };
}

/**
 * Wait for the row's moment and send its signal; answers when the signal was sent (for a launcher
 * row, when the canary command sent it). An audit event is caught as it is written (inotify on
 * the audit folder), not at the next poll: some phases last only milliseconds. A run that ends
 * before the moment fails the row.
 */
export async function fire(scenario: Scenario, site: RowSite, run: Proc, signal: AbortSignal): Promise<number> {
  const what = scenario.trigger.kind === "event" ? `the ${scenario.trigger.event} event` : `the trigger (${scenario.trigger.kind})`;
  const checker = triggerChecker(scenario, site, run);
  let watcher: FSWatcher | null = null;
  if (scenario.trigger.kind === "event") {
    mkdirSync(site.layout.auditDir, { recursive: true });
    watcher = watch(site.layout.auditDir, () => void checker.check().catch(() => undefined));
  }
  try {
    await waitFor(
      async () => {
        if ((await checker.check()) !== null) return true;
        const ended = run.ended();
        if (ended) {
          throw new Error(`the run ended (${exitText(ended)}) before ${what}: ${run.stdout().slice(-300)} ${run.stderr().slice(-300)}`);
        }
        return false;
      },
      what,
      { timeoutMs: 60_000, signal, pollMs: TRIGGER_POLL_MS },
    );
  } finally {
    watcher?.close();
  }
  return checker.sentAt() ?? Date.now();
}
