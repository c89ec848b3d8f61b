import { type ChildProcess, spawn } from "node:child_process";
import { messageOf } from "@gpu-canary/errors";
import { splitArguments } from "@gpu-canary/config";
import { ControlError } from "./errors.ts";
import { stopProcessGroup } from "./procfs.ts";

export interface CanarySettings {
  /** KLR_VLLM_COMMAND, split with shell quoting rules */
  vllmCommand: string;
  modelPath: string;
  port: number;
  gpuMemoryUtilization: number;
  /** the GPU's nvidia-smi index; CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA's index the same */
  gpuIndex: number;
  maxModelLen?: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  kvCacheDtype?: "auto" | "fp8";
  /** KLR_VLLM_EXTRA_ARGS */
  extraArgs?: string;
  env?: Record<string, string>;
}

/** Split a command line like a shell would, refusing anything a shell would do more with (config's rule). */
export function splitCommand(text: string, variable: string): string[] {
  const split = splitArguments(text);
  if (split.ok) return split.value;
  throw new ControlError(
    "VLLM_COMMAND_INVALID",
    `${variable} is not a plain command line: expected ${split.expected}: ${text}`,
    `${variable} is split into arguments, not run by a shell: use a wrapper script for pipes, redirections or variables`,
  );
}

/** The canary's argv: KLR_VLLM_COMMAND plus the flags that shape its memory, as production's. */
export function canaryArgv(settings: CanarySettings): string[] {
  const base = splitCommand(settings.vllmCommand, "KLR_VLLM_COMMAND");
  if (base.length === 0)
    throw new ControlError(
      "VLLM_COMMAND_INVALID",
      "KLR_VLLM_COMMAND is empty",
      "set it to how vLLM is started, e.g. python3 -m vllm.entrypoints.openai.api_server",
    );
  const argv = [
    ...base,
    "--port",
    String(settings.port),
    "--model",
    settings.modelPath,
    "--gpu-memory-utilization",
    String(settings.gpuMemoryUtilization),
  ];
  if (settings.maxModelLen !== undefined) argv.push("--max-model-len", String(settings.maxModelLen));
  if (settings.maxNumSeqs !== undefined) argv.push("--max-num-seqs", String(settings.maxNumSeqs));
  if (settings.maxNumBatchedTokens !== undefined) argv.push("--max-num-batched-tokens", String(settings.maxNumBatchedTokens));
  if (settings.kvCacheDtype !== undefined && settings.kvCacheDtype !== "auto") argv.push("--kv-cache-dtype", settings.kvCacheDtype);
  if (settings.extraArgs) argv.push(...splitCommand(settings.extraArgs, "KLR_VLLM_EXTRA_ARGS"));
  return argv;
}

export interface CanaryProcess {
  readonly pid: number;
  /** its process group: the canary and whatever it started */
  readonly pgid: number;
  readonly argv: string[];
  /** the last lines it printed, to report why it failed (vLLM's out-of-memory texts) */
  tail(): string;
  /** settles when the canary's main process exits */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  hasExited(): boolean;
  /**
   * Let a held canary run (see LaunchOptions.held); a no-op for one that was not held. Call it
   * once the canary's process group is recorded where a watchdog will find it.
   */
  release(): void;
  /** SIGTERM to the group, SIGKILL after the grace period, until no member is left */
  stop(graceMs?: number): Promise<{ killed: boolean }>;
}

const TAIL_BYTES = 64 * 1024;

export interface LaunchOptions {
  /**
   * Start the canary's process group but hold vLLM back until `release()`: the caller records the
   * group first (the restore watchdog's arm file), so a caller killed at any instant leaves no
   * canary nobody knows of. The holder is a shell waiting for one line on a pipe from the caller;
   * if the caller dies first, the pipe closes and the shell exits without starting vLLM.
   */
  held?: boolean;
}

/** The shell that waits for the go line, then becomes vLLM (same PID, same group). */
const HOLD_SCRIPT = 'read -r go && exec "$@" < /dev/null';

/** Start the canary in a process group of its own, its output kept. */
export function launchCanary(settings: CanarySettings, options: LaunchOptions = {}): CanaryProcess {
  const argv = canaryArgv(settings);
  const [file, ...args] = argv as [string, ...string[]];
  const held = options.held === true;
  let child: ChildProcess;
  try {
    child = spawn(held ? "/bin/sh" : file, held ? ["-c", HOLD_SCRIPT, "gpu-canary-held-canary", file, ...args] : args, {
      detached: true,
      stdio: [held ? "pipe" : "ignore", "pipe", "pipe"],
      env: { ...process.env, ...settings.env, CUDA_VISIBLE_DEVICES: String(settings.gpuIndex), CUDA_DEVICE_ORDER: "PCI_BUS_ID" },
    });
  } catch (error) {
    throw new ControlError("CANARY_LAUNCH_FAILED", `could not start ${file}: ${messageOf(error)}`, "check KLR_VLLM_COMMAND");
  }
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-TAIL_BYTES);
  };
  child.stdout?.on("data", keep);
  child.stderr?.on("data", keep);
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once("error", (error) => {
      done = true;
      keep(Buffer.from(`\n${error.message}\n`));
      resolve({ code: 127, signal: null });
    });
    child.once("exit", (code, signal) => {
      done = true;
      resolve({ code, signal });
    });
  });
  const pid = child.pid ?? -1;
  // A held canary's pipe breaks if it exits before the go line: that exit is what the caller sees.
  child.stdin?.on("error", () => undefined);
  return {
    pid,
    pgid: pid,
    argv,
    tail: () => output,
    exited,
    hasExited: () => done,
    release() {
      if (held && child.stdin?.writable) child.stdin.end("go\n");
    },
    async stop(graceMs = 5000) {
      if (pid <= 0) return { killed: false };
      const { killed, gone } = await stopProcessGroup(pid, graceMs);
      if (!gone) {
        throw new ControlError(
          "CANARY_STOP_FAILED",
          `the canary's processes (group ${pid}) survived SIGKILL`,
          "a process stuck in the driver (state D) may need a reboot: check `ps -o pid,stat,cmd -g` and `nvidia-smi`",
        );
      }
      return { killed };
    },
  };
}
