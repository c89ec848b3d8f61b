import { setTimeout as sleep } from "node:timers/promises";
import type { GpuProbe, GpuProcess } from "@gpu-canary/gpu-probe";
import { ControlError } from "./errors.ts";
import { runOperatorCommand } from "./shell.ts";

export interface WhisperControlDeps {
  stopCommand?: string;
  startCommand?: string;
  /** KLR_WHISPER_PROCESS: names Whisper in nvidia-smi's process list */
  processMatch: string;
  gpuIndex: number;
  probe?: GpuProbe;
  env?: Record<string, string>;
}

/** How long a started Whisper may take to hold its memory steady, and how often nvidia-smi is asked. */
export interface SteadyOptions {
  /** KLR_WHISPER_STEADY_TIMEOUT (default 20 s) */
  timeoutMs?: number;
  /** between two readings (default 1 s) */
  pollMs?: number;
}

export const STEADY_DEFAULTS = { timeoutMs: 20_000, pollMs: 1000 } as const;

/** What the wait saw: the readings (MiB, null when no Whisper showed), the last two of which agreed. */
export interface SteadyWhisper {
  footprintMib: number;
  readingsMib: (number | null)[];
  seconds: number;
}

/** Whisper's size can be exercised for real only when both commands are configured. */
export function whisperConfigured(deps: WhisperControlDeps): boolean {
  return Boolean(deps.stopCommand && deps.startCommand);
}

/** Whisper's PIDs and footprint on its GPU (footprint null when nvidia-smi shows none); `exclude` leaves out PIDs that ran before. */
async function whisperOnGpu(
  deps: WhisperControlDeps & { probe: GpuProbe },
  uuid: string | undefined,
  exclude: ReadonlySet<number> = new Set(),
): Promise<{ pids: number[]; mib: number | null }> {
  const mine = (await whisperProcesses(deps, uuid)).filter((p) => !exclude.has(p.pid));
  return { pids: mine.map((p) => p.pid), mib: mine.length === 0 ? null : mine.reduce((sum, p) => sum + (p.usedMemoryMib ?? 0), 0) };
}

const gpuUuid = async (deps: WhisperControlDeps & { probe: GpuProbe }) =>
  (await deps.probe.queryGpus()).gpus.find((g) => g.index === deps.gpuIndex)?.uuid;

/** The Whisper processes (KLR_WHISPER_PROCESS) nvidia-smi shows on Whisper's GPU; `uuid` spares a query when known. */
export async function whisperProcesses(deps: WhisperControlDeps & { probe: GpuProbe }, uuid?: string): Promise<GpuProcess[]> {
  const gpu = uuid ?? (await gpuUuid(deps));
  const match = deps.processMatch.toLowerCase();
  return (await deps.probe.queryProcesses()).filter((p) => p.gpuUuid === gpu && p.name.toLowerCase().includes(match));
}

/** Whisper's current GPU footprint in MiB (null when nvidia-smi does not show it); `uuid` spares a query when known. */
export async function whisperFootprint(deps: WhisperControlDeps, uuid?: string): Promise<number | null> {
  if (!deps.probe) return null;
  const probe = { ...deps, probe: deps.probe };
  return (await whisperOnGpu(probe, uuid ?? (await gpuUuid(probe)))).mib;
}

/**
 * Whether two readings of Whisper's memory agree: within 0.5 % of the larger, and never less than
 * 8 MiB. nvidia-smi counts whole MiB, and PyTorch's caching allocator reserves small tensors in
 * 2 MiB blocks and larger ones in 20 MiB segments, so a loaded Whisper serving audio moves by a
 * few of those; a loading one moves by hundreds of MiB between readings a second apart (weights
 * stream in at 100 MB/s and more). The most two agreeing readings can hide — 51 MiB beside a
 * 10 GiB Whisper — is under the 150 MiB vLLM keeps spare in its own memory account
 * (vllm/v1/worker/gpu_worker.py) and the predictor's 0.25–0.5 GiB margin.
 */
export function readingsAgree(a: number, b: number): boolean {
  return Math.abs(a - b) <= Math.max(8, 0.005 * Math.max(a, b));
}

/**
 * Wait until the started Whisper's memory holds still: two consecutive nvidia-smi readings, one
 * poll apart, of the Whisper processes that did not run before (`exclude`) agree. vLLM aborts a
 * start whose free memory rises while it profiles (vllm-project/vllm#56830, a Whisper releasing
 * its warm-up memory) and counts any other change as its own, so no vLLM may start before this.
 * Throws WHISPER_NOT_STEADY with the readings when the timeout passes first.
 */
export async function waitWhisperSteady(
  deps: WhisperControlDeps & { probe: GpuProbe },
  size: string,
  exclude: ReadonlySet<number>,
  options: SteadyOptions = {},
): Promise<SteadyWhisper> {
  const timeoutMs = options.timeoutMs ?? STEADY_DEFAULTS.timeoutMs;
  const pollMs = options.pollMs ?? STEADY_DEFAULTS.pollMs;
  const started = Date.now();
  const uuid = await gpuUuid(deps);
  const readings: (number | null)[] = [];
  for (;;) {
    const { mib } = await whisperOnGpu(deps, uuid, exclude);
    const last = readings.at(-1);
    readings.push(mib);
    if (mib !== null && last != null && readingsAgree(last, mib))
      return { footprintMib: mib, readingsMib: readings, seconds: (Date.now() - started) / 1000 };
    // The next reading would come after the deadline.
    if (Date.now() + pollMs > started + timeoutMs) break;
    await sleep(pollMs);
  }
  const seen = readings.some((r) => r !== null);
  const shown = readings
    .slice(-8)
    .map((r) => (r === null ? "none" : String(r)))
    .join(", ");
  throw new ControlError(
    "WHISPER_NOT_STEADY",
    seen
      ? `Whisper (${size}) did not hold its GPU memory steady within ${timeoutMs / 1000} s: nvidia-smi read ${shown} MiB, ${pollMs / 1000} s apart (two in a row must agree within 0.5 %, at least 8 MiB)`
      : `no Whisper (${size}) showed in nvidia-smi on GPU ${deps.gpuIndex} within ${timeoutMs / 1000} s of its start`,
    seen
      ? "a vLLM starting beside a Whisper whose memory moves aborts (vllm-project/vllm#56830) or misjudges its KV cache: raise KLR_WHISPER_STEADY_TIMEOUT if Whisper loads slowly, else find what keeps its memory moving"
      : `check that KLR_WHISPER_START_COMMAND starts it on that GPU and that KLR_WHISPER_PROCESS (${deps.processMatch}) names its process in nvidia-smi`,
    { readings_mib: readings },
  );
}

/**
 * Switch Whisper from one size to another with the operator's commands; the size each acts on
 * arrives as GPU_CANARY_WHISPER_SIZE. With a probe, a start is complete only once the new
 * Whisper's memory is steady (waitWhisperSteady): no vLLM may profile memory beside it before.
 */
export async function switchWhisper(
  deps: WhisperControlDeps,
  from: string,
  to: string,
  timeoutMs: number,
  steady: SteadyOptions = {},
): Promise<{ footprintMib: number | null; steady: SteadyWhisper | null; commandsSeconds: number }> {
  if (!deps.stopCommand || !deps.startCommand) {
    throw new ControlError(
      "WHISPER_COMMAND_FAILED",
      "KLR_WHISPER_STOP_COMMAND and KLR_WHISPER_START_COMMAND are not both set",
      "set both to exercise Whisper sizes for real",
    );
  }
  const run = async (command: string, size: string, what: string) => {
    const result = await runOperatorCommand(command, { env: { ...deps.env, GPU_CANARY_WHISPER_SIZE: size }, timeoutMs });
    if (result.exitCode !== 0)
      throw new ControlError(
        "WHISPER_COMMAND_FAILED",
        `the Whisper ${what} command (size ${size}) exited with ${String(result.exitCode)}: ${result.output.trim()}`,
        `run KLR_WHISPER_${what.toUpperCase()}_COMMAND by hand with GPU_CANARY_WHISPER_SIZE=${size}`,
      );
  };
  const probe = deps.probe ? { ...deps, probe: deps.probe } : null;
  // The Whisper that ran before is not the one whose memory must settle.
  const before = probe ? new Set((await whisperOnGpu(probe, await gpuUuid(probe))).pids) : new Set<number>();
  const started = Date.now();
  if (from !== "none") await run(deps.stopCommand, from, "stop");
  if (to === "none") return { footprintMib: null, steady: null, commandsSeconds: (Date.now() - started) / 1000 };
  await run(deps.startCommand, to, "start");
  const commandsSeconds = (Date.now() - started) / 1000;
  if (!probe) return { footprintMib: null, steady: null, commandsSeconds };
  const settled = await waitWhisperSteady(probe, to, before, steady);
  return { footprintMib: settled.footprintMib, steady: settled, commandsSeconds };
}
