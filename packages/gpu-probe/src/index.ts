export { GpuProbeError } from "./errors.ts";
export type { GpuProbeErrorCode } from "./errors.ts";
export { APP_FIELDS, GPU_FIELDS, attachProcesses, cudaTotalMib, parseComputeApps, parseGpus } from "./gpus.ts";
export type { Gpu, GpuProcess } from "./gpus.ts";
export { createGpuProbe, spawnExec } from "./nvidia-smi.ts";
export type { Exec, GpuProbe, GpuProbeDeps, GpuReport, RunResult } from "./nvidia-smi.ts";
export { headerName, parseCsv } from "./parse-csv.ts";
