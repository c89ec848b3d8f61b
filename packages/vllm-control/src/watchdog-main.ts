// The restore watchdog process: `watchdog-main <arm file>`. See watchdog.ts.
import { mkdir, readFile, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import { createGpuProbe } from "@gpu-canary/gpu-probe";
import { createProcessInspector, writeJsonAtomic } from "@gpu-canary/state-file";
import { stopProcessGroup } from "./procfs.ts";
import { productionServes, restoreUnlessServing } from "./restore.ts";
import { STEADY_DEFAULTS, switchWhisper } from "./whisper.ts";
import { type ArmFile, type WatchdogReport, readArmFile, watchdogPidPath } from "./watchdog.ts";

const armFile = process.argv[2];
if (!armFile) process.exit(2);
const inspector = createProcessInspector();
// The armer may be killed along with its terminal or session: this process ignores those signals.
process.on("SIGHUP", () => undefined);
/** A start the run issued is waited for this much longer than its estimate before the watchdog issues its own. */
const START_MARGIN_MS = 10_000;
const pidFile = watchdogPidPath(armFile);
// Who this watchdog is, so `recover` waits for a live one and never for a dead one. Best effort: on
// a full disk recovery simply does not wait.
await writeJsonAtomic(pidFile, { pid: process.pid, start_token: inspector.selfToken() }).catch(() => undefined);

/** Until when a start the run already issued is left to finish (null: none in progress). */
function startInProgressUntil(arm: ArmFile): number | null {
  const since = arm.restore_started_at ? Date.parse(arm.restore_started_at) : NaN;
  if (!Number.isFinite(since)) return null;
  return since + (arm.restore_estimate_seconds ?? arm.restore.serveTimeoutMs / 1000) * 1000 + START_MARGIN_MS;
}

/** Wait for production to serve until `until`; true once it does. */
async function servesBy(arm: ArmFile, until: number): Promise<boolean> {
  while (Date.now() < until) {
    if (await productionServes(arm.restore, 3000)) return true;
    await sleep(250);
  }
  return false;
}

function armerDead(arm: ArmFile): boolean {
  const probe = inspector.probe(arm.armer_pid);
  if (probe.state === "dead") return true;
  return (
    probe.state === "alive" && arm.armer_start_token !== null && probe.startToken !== null && probe.startToken !== arm.armer_start_token
  );
}

async function fire(arm: ArmFile, reason: string): Promise<void> {
  const firedAt = new Date();
  let armerKilled = false;
  if (!armerDead(arm)) {
    // So that no late step of the run follows the watchdog's restore.
    try {
      process.kill(arm.armer_pid, "SIGKILL");
      armerKilled = true;
    } catch {
      // it died meanwhile
    }
  }
  const canaryStopped = arm.canary_pgid === null ? true : (await stopProcessGroup(arm.canary_pgid, 3000)).gone;
  // Whisper back to production's size before production starts: beside a bigger candidate Whisper
  // production might not fit its memory. As in the run, the switch is complete only once the new
  // Whisper's memory is steady (two nvidia-smi readings agree, within the run's
  // KLR_WHISPER_STEADY_TIMEOUT): a vLLM profiling beside a Whisper that gives back its warm-up
  // memory aborts (vllm-project/vllm#56830). Not steady in time: production is started all the same
  // (it must come back) and the report says what nvidia-smi read.
  let whisperRestored: boolean | null = null;
  let whisperSteady: WatchdogReport["whisper_steady"] = null;
  let whisperError: string | null = null;
  if (arm.whisper) {
    const w = arm.whisper;
    const env = arm.restore.env;
    const probe = arm.restore.nvidiaSmi ? createGpuProbe({ executable: arm.restore.nvidiaSmi, ...(env ? { env } : {}) }) : undefined;
    try {
      const deps = {
        stopCommand: w.stop_command,
        startCommand: w.start_command,
        processMatch: w.process_match,
        gpuIndex: arm.restore.gpuIndex,
        ...(probe ? { probe } : {}),
        ...(env ? { env } : {}),
      };
      const switched = await switchWhisper(deps, w.at, w.back_to, 30_000, {
        timeoutMs: (w.steady_timeout_seconds ?? STEADY_DEFAULTS.timeoutMs / 1000) * 1000,
        ...(w.steady_poll_ms ? { pollMs: w.steady_poll_ms } : {}),
      });
      whisperRestored = true;
      if (switched.steady) whisperSteady = { steady: true, readings_mib: switched.steady.readingsMib, seconds: switched.steady.seconds };
    } catch (e) {
      // Not steady in time: a Whisper that showed runs at production's size, but its memory still moved.
      const notSteady = e instanceof GpuCanaryError && e.code === "WHISPER_NOT_STEADY";
      const details = notSteady ? e.details.readings_mib : undefined;
      const readings = Array.isArray(details) ? (details as (number | null)[]) : [];
      if (notSteady) whisperSteady = { steady: false, readings_mib: readings, seconds: null };
      whisperRestored = readings.some((r) => r !== null);
      whisperError = `Whisper could not be switched back to ${w.back_to}${notSteady ? " steady" : ""}: ${messageOf(e)}`;
    }
  }
  let servingAt: Date | null = null;
  let seconds: number | null = null;
  let error: string | null = null;
  // A production that serves was restored by the run before it died: starting it again would at
  // best do nothing and at worst (a start command) launch a second instance beside it. One the run
  // was starting is given the time its start takes before a second start is issued.
  const inProgress = startInProgressUntil(arm);
  // Asked in both modes: the run may have died after waking it, and a probe here is bounded.
  const serving = () => (inProgress !== null ? servesBy(arm, inProgress) : productionServes(arm.restore, 3000));
  let wasServing = false;
  try {
    const restored = await restoreUnlessServing(arm.restore, { serving });
    wasServing = restored.alreadyServing;
    servingAt = restored.servingAt;
    seconds = restored.seconds;
  } catch (e) {
    error = messageOf(e);
  }
  const report: WatchdogReport = {
    run_id: arm.run_id,
    fired_at: firedAt.toISOString(),
    reason,
    armer_killed: armerKilled,
    canary_stopped: canaryStopped,
    production_serving_at: servingAt?.toISOString() ?? null,
    production_was_serving: wasServing,
    restore_seconds: seconds,
    whisper_restored: whisperRestored,
    whisper_steady: whisperSteady,
    error: [whisperError, error].filter(Boolean).join("; ") || null,
  };
  // Kept per run, so a later firing never overwrites one that recovery has not read yet.
  const runReport = arm.run_report_path;
  if (runReport)
    await mkdir(dirname(runReport), { recursive: true })
      .then(() => writeJsonAtomic(runReport, report))
      .catch(() => undefined);
  await writeJsonAtomic(arm.report_path, report);
}

let runId: string | null = null;
for (;;) {
  let arm: ArmFile | null;
  try {
    arm = await readArmFile(armFile);
  } catch {
    arm = null;
  }
  if (arm === null || arm.disarmed) break;
  // The file names another run (this one was disarmed, and the next armed it): its own watchdog watches it.
  if (runId !== null && arm.run_id !== runId) break;
  runId = arm.run_id;
  if (armerDead(arm)) {
    // A report it could not write (a full disk) must not leave the arm file behind for recovery to wait on.
    await fire(arm, `the arming process ${arm.armer_pid} died`).catch(() => undefined);
    break;
  }
  // A slow start the run issued is not a reason to kill the run: wait for it, up to its estimate.
  const startUntil = startInProgressUntil(arm);
  if (Date.now() >= Date.parse(arm.deadline_at) && (startUntil === null || Date.now() >= startUntil)) {
    await fire(arm, `the run passed its deadline ${arm.deadline_at}`).catch(() => undefined);
    break;
  }
  await sleep(50);
}
// Only this run's files: a newer run's arm file and its watchdog's PID are that watchdog's to remove.
const left = await readArmFile(armFile).catch(() => null);
if (left === null || left.run_id === runId) await rm(armFile, { force: true });
const pidNow = await readFile(pidFile, "utf8")
  .then((t) => (JSON.parse(t) as { pid?: unknown }).pid ?? null)
  .catch(() => null);
if (pidNow === null || pidNow === process.pid) await rm(pidFile, { force: true });
process.exit(0);
