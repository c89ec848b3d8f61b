import { spawn } from "node:child_process";
import { messageOf } from "@gpu-canary/errors";
import { GpuProbeError } from "./errors.ts";
import {
  APP_FIELDS,
  GPU_FIELDS,
  GPU_FIELDS_OLD_DRIVER,
  type Gpu,
  type GpuProcess,
  attachProcesses,
  parseComputeApps,
  parseGpus,
} from "./gpus.ts";

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number | undefined;
  timedOut: boolean;
  notFound: boolean;
}

/** Runs an executable with an argument array (never a shell); injected in tests. */
export type Exec = (
  file: string,
  args: readonly string[],
  options: { timeoutMs: number; env: Record<string, string> },
) => Promise<RunResult>;

/**
 * Runs nvidia-smi with node's child_process, as execa 9 ran it (reject: false): the environment added
 * to this process's own, stdin ignored, killed with SIGKILL at the timeout, one final newline taken
 * off each output. Not execa: loading it was a tenth of `gpu-canary status`'s cold start (README, Benchmarks).
 */
export const spawnExec: Exec = (file, args, { timeoutMs, env }) =>
  new Promise((resolve) => {
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let timedOut = false;
    let settled = false;
    const child = spawn(file, args, { env: { ...process.env, ...env, LC_ALL: "C" }, stdio: ["ignore", "pipe", "pipe"] });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    const text = (chunks: Buffer[]) =>
      Buffer.concat(chunks)
        .toString("utf8")
        .replace(/\r?\n$/, "");
    const settle = (exitCode: number | undefined, notFound: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve({ stdout: text(stdout), stderr: text(stderr), exitCode, timedOut, notFound });
    };
    child.stdout.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.on("error", (error: NodeJS.ErrnoException) => settle(undefined, error.code === "ENOENT"));
    child.on("close", (code) => settle(code ?? undefined, false));
  });

export interface GpuProbeDeps {
  /** KLR_NVIDIA_SMI */
  executable: string;
  exec?: Exec;
  timeoutMs?: number;
  /** added to the inherited environment (the simulated host's GPU_CANARY_SIM_HOST) */
  env?: Record<string, string>;
}

export interface GpuReport {
  gpus: Gpu[];
  /** processes nvidia-smi listed on no GPU it reported (should not happen; kept, not dropped) */
  unmatchedProcesses: GpuProcess[];
  /** false when the driver does not know memory.reserved */
  reservedKnown: boolean;
}

/** nvidia-smi's own first line, quoted: the operator searches for its words, not ours. */
function said(output: string): string {
  const line = output
    .split("\n")
    .map((l) => l.trim())
    .find(Boolean);
  return line ? ` — nvidia-smi said: ${JSON.stringify(line.slice(0, 300))}` : "";
}

/** Known failure texts come first: an error message is never parsed as data. */
function classify(file: string, result: RunResult): GpuProbeError | null {
  const output = `${result.stdout}\n${result.stderr}`.trim();
  if (result.notFound)
    return new GpuProbeError("NVIDIA_SMI_NOT_FOUND", `nvidia-smi was not found at ${JSON.stringify(file)} (KLR_NVIDIA_SMI)`, output);
  if (result.timedOut) return new GpuProbeError("NVIDIA_SMI_TIMEOUT", `${file} did not answer in time and was killed`, output);
  if (/couldn't communicate with the NVIDIA driver/i.test(output) || result.exitCode === 9) {
    return new GpuProbeError("NVIDIA_DRIVER_NOT_LOADED", `nvidia-smi cannot talk to the NVIDIA driver${said(output)}`, output);
  }
  if (/Driver\/library version mismatch/i.test(output))
    return new GpuProbeError(
      "NVML_VERSION_MISMATCH",
      `the NVIDIA driver and its NVML library are of different versions${said(output)}`,
      output,
    );
  if (/No devices were found/i.test(output)) return new GpuProbeError("NO_GPUS_FOUND", `nvidia-smi found no GPU${said(output)}`, output);
  if (result.exitCode !== 0) {
    return new GpuProbeError("NVIDIA_SMI_FAILED", `${file} exited with ${String(result.exitCode)}: ${output.split("\n")[0] ?? ""}`, output);
  }
  return null;
}

const unknownField = (result: RunResult, field: string) =>
  `${result.stdout}\n${result.stderr}`.includes(`Field "${field}" is not a valid field to query`);

export function createGpuProbe(deps: GpuProbeDeps) {
  const exec = deps.exec ?? spawnExec;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const run = async (args: string[]) => {
    try {
      return await exec(deps.executable, args, { timeoutMs, env: deps.env ?? {} });
    } catch (error) {
      throw new GpuProbeError("NVIDIA_SMI_FAILED", `could not run ${deps.executable}: ${messageOf(error)}`);
    }
  };

  const queryGpus = async (): Promise<{ gpus: Omit<Gpu, "processes">[]; reservedKnown: boolean }> => {
    let fields: readonly string[] = GPU_FIELDS;
    let result = await run([`--query-gpu=${fields.join(",")}`, "--format=csv,noheader,nounits"]);
    if (unknownField(result, "memory.reserved")) {
      // Drivers before memory.reserved: ask again without it.
      fields = GPU_FIELDS_OLD_DRIVER;
      result = await run([`--query-gpu=${fields.join(",")}`, "--format=csv,noheader,nounits"]);
    }
    const error = classify(deps.executable, result);
    if (error) throw error;
    const gpus = parseGpus(result.stdout, fields);
    if (gpus.length === 0) throw new GpuProbeError("NO_GPUS_FOUND", "nvidia-smi listed no GPU", result.stdout);
    return { gpus, reservedKnown: fields.includes("memory.reserved") };
  };

  const queryProcesses = async (): Promise<GpuProcess[]> => {
    const result = await run([`--query-compute-apps=${APP_FIELDS.join(",")}`, "--format=csv,noheader,nounits"]);
    const error = classify(deps.executable, result);
    if (error) throw error;
    return parseComputeApps(result.stdout);
  };

  return {
    /** Every GPU with its memory and compute processes. */
    async report(): Promise<GpuReport> {
      const { gpus, reservedKnown } = await queryGpus();
      const { gpus: withProcesses, unmatched } = attachProcesses(gpus, await queryProcesses());
      return { gpus: withProcesses, unmatchedProcesses: unmatched, reservedKnown };
    },
    queryGpus,
    queryProcesses,
  };
}

export type GpuProbe = ReturnType<typeof createGpuProbe>;
