import { setTimeout as sleep } from "node:timers/promises";
import type { GpuProbe } from "@gpu-canary/gpu-probe";
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

/** Whisper's size can be exercised for real only when both commands are configured. */
export function whisperConfigured(deps: WhisperControlDeps): boolean {
  return Boolean(deps.stopCommand && deps.startCommand);
}

/** Whisper's current GPU footprint in MiB (null when nvidia-smi does not show it); `uuid` spares a query when known. */
export async function whisperFootprint(deps: WhisperControlDeps, uuid?: string): Promise<number | null> {
  if (!deps.probe) return null;
  const gpuUuid = uuid ?? (await deps.probe.queryGpus()).gpus.find((g) => g.index === deps.gpuIndex)?.uuid;
  const match = deps.processMatch.toLowerCase();
  const mine = (await deps.probe.queryProcesses()).filter((p) => p.gpuUuid === gpuUuid && p.name.toLowerCase().includes(match));
  if (mine.length === 0) return null;
  return mine.reduce((sum, p) => sum + (p.usedMemoryMib ?? 0), 0);
}

/**
 * Switch Whisper from one size to another with the operator's commands; the size each acts on
 * arrives as GPU_CANARY_WHISPER_SIZE. After a start, wait until its footprint shows and stops
 * changing, so vLLM never profiles memory while Whisper is still loading.
 */
export async function switchWhisper(
  deps: WhisperControlDeps,
  from: string,
  to: string,
  timeoutMs: number,
): Promise<{ footprintMib: number | null }> {
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
  if (from !== "none") await run(deps.stopCommand, from, "stop");
  if (to === "none") return { footprintMib: null };
  await run(deps.startCommand, to, "start");
  if (!deps.probe) return { footprintMib: null };
  const deadline = Date.now() + timeoutMs;
  const uuid = (await deps.probe.queryGpus()).gpus.find((g) => g.index === deps.gpuIndex)?.uuid;
  let last: number | null = null;
  while (Date.now() < deadline) {
    const now = await whisperFootprint(deps, uuid);
    if (now !== null && now === last) return { footprintMib: now };
    last = now;
    await sleep(500);
  }
  throw new ControlError(
    "WHISPER_COMMAND_FAILED",
    `Whisper (${to}) did not settle on the GPU within ${timeoutMs / 1000} s`,
    `check that KLR_WHISPER_PROCESS (${deps.processMatch}) names its process in nvidia-smi`,
  );
}
