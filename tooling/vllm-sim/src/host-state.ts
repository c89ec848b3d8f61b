import { readFileSync } from "node:fs";
import { type ProcessInspector, createProcessInspector, updateJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import * as z from "zod";

/**
 * The simulated GPU host: a small JSON file that the nvidia-smi stand-in reads and that each
 * simulated process registers its GPU memory in. A process whose PID has died no longer
 * counts, as the real driver frees a dead process's memory.
 */
export const FAILURES = ["driver-not-loaded", "no-devices", "nvml-mismatch", "hang", "garbage"] as const;

export const simGpuSchema = z.object({
  index: z.number().int().nonnegative(),
  uuid: z.string(),
  name: z.string(),
  memory_total_mib: z.number().int().positive(),
  memory_reserved_mib: z.number().int().nonnegative(),
  mig: z.boolean().default(false),
});

export const simProcessSchema = z.object({
  gpu_index: z.number().int().nonnegative(),
  pid: z.number().int().positive(),
  name: z.string(),
  used_memory_mib: z.number().int().nonnegative(),
});

export const hostStateSchema = z.object({
  driver_version: z.string().default("580.65.06"),
  /** drivers before memory.reserved existed answer "not a valid field" */
  supports_reserved: z.boolean().default(true),
  fail: z.enum(FAILURES).nullable().default(null),
  gpus: z.array(simGpuSchema),
  processes: z.array(simProcessSchema).default([]),
});

export type HostState = z.infer<typeof hostStateSchema>;
export type SimGpu = z.infer<typeof simGpuSchema>;
export type SimProcess = z.infer<typeof simProcessSchema>;

/** An H200 as the real driver reports it (143771 MiB total, 623 MiB reserved; driver 610.43.02 capture in nvidia_gpu_exporter). */
export function h200(index: number): SimGpu {
  return {
    index,
    uuid: `GPU-00000000-0000-0000-0000-${String(index).padStart(12, "0")}`,
    name: "NVIDIA H200",
    memory_total_mib: 143771,
    memory_reserved_mib: 623,
    mig: false,
  };
}

export async function createHost(path: string, state: z.input<typeof hostStateSchema>): Promise<HostState> {
  const parsed = hostStateSchema.parse(state);
  await writeJsonAtomic(path, parsed);
  return parsed;
}

export function readHost(path: string): HostState {
  return hostStateSchema.parse(JSON.parse(readFileSync(path, "utf8")));
}

export async function updateHost(path: string, change: (state: HostState) => HostState): Promise<HostState> {
  return updateJsonState(path, hostStateSchema, (current) => {
    if (current.status !== "ok") throw new Error(`the simulated host ${path} is ${current.status}`);
    const next = change(current.value);
    return { write: next, answer: next };
  });
}

/** Register a process's GPU memory (replacing an earlier entry of the same PID). */
export function registerProcess(path: string, process: SimProcess): Promise<HostState> {
  return updateHost(path, (state) => ({ ...state, processes: [...state.processes.filter((p) => p.pid !== process.pid), process] }));
}

export function unregisterProcess(path: string, pid: number): Promise<HostState> {
  return updateHost(path, (state) => ({ ...state, processes: state.processes.filter((p) => p.pid !== pid) }));
}

/** The processes that still run: the driver frees a dead process's memory. */
export function liveProcesses(state: HostState, inspector: ProcessInspector = createProcessInspector()): SimProcess[] {
  return state.processes.filter((p) => inspector.probe(p.pid).state !== "dead");
}

export function usedMib(state: HostState, gpu: SimGpu, live: SimProcess[]): number {
  return live.filter((p) => p.gpu_index === gpu.index).reduce((sum, p) => sum + p.used_memory_mib, 0);
}

export function freeMib(state: HostState, gpu: SimGpu, live: SimProcess[]): number {
  return Math.max(0, gpu.memory_total_mib - gpu.memory_reserved_mib - usedMib(state, gpu, live));
}
