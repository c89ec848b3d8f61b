import { GpuProbeError } from "./errors.ts";
import { isAbsent, mib, parseCsv } from "./parse-csv.ts";

export interface GpuProcess {
  pid: number;
  name: string;
  /** null when the driver does not attribute memory per process (MIG, WDDM) */
  usedMemoryMib: number | null;
  gpuUuid: string;
}

export interface Gpu {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMib: number | null;
  /** null when the driver does not report it (before memory.reserved existed) */
  memoryReservedMib: number | null;
  memoryUsedMib: number | null;
  memoryFreeMib: number | null;
  processes: GpuProcess[];
}

export const GPU_FIELDS = ["index", "uuid", "name", "memory.total", "memory.reserved", "memory.used", "memory.free"] as const;
export const GPU_FIELDS_OLD_DRIVER = GPU_FIELDS.filter((f) => f !== "memory.reserved");
export const APP_FIELDS = ["gpu_uuid", "pid", "process_name", "used_memory"] as const;

/** Rows of `--query-gpu`; every row must look like a GPU, so an error text is never read as one. */
export function parseGpus(text: string, fields: readonly string[]): Omit<Gpu, "processes">[] {
  const table = parseCsv(text, fields, "index");
  const col = (row: string[], field: string) => {
    const i = table.columns.get(field);
    return i === undefined ? undefined : row[i];
  };
  return table.rows.map((row) => {
    const indexCell = col(row, "index") ?? "";
    const uuid = col(row, "uuid") ?? "";
    if (!/^\d+$/.test(indexCell) || !/^(GPU|MIG)-[0-9A-Za-z-]+$/.test(uuid)) {
      throw new GpuProbeError(
        "NVIDIA_SMI_UNPARSABLE",
        `nvidia-smi printed a line that is not a GPU row: ${JSON.stringify(row.join(", ").slice(0, 200))}`,
        text,
      );
    }
    const reserved = table.columns.has("memory.reserved") ? mib(col(row, "memory.reserved"), "memory.reserved", text) : null;
    return {
      index: Number(indexCell),
      uuid,
      name: col(row, "name") ?? "",
      memoryTotalMib: mib(col(row, "memory.total"), "memory.total", text),
      memoryReservedMib: reserved,
      memoryUsedMib: mib(col(row, "memory.used"), "memory.used", text),
      memoryFreeMib: mib(col(row, "memory.free"), "memory.free", text),
    };
  });
}

/**
 * Rows of `--query-compute-apps=gpu_uuid,pid,process_name,used_memory`. A process name may
 * hold spaces and, on older drivers, commas: read from the outside in (uuid and pid from the
 * left, memory from the right, the name is what is between). Rows the driver could not read
 * (`[Insufficient Permissions]` for a PID) are skipped.
 */
export function parseComputeApps(text: string): GpuProcess[] {
  const table = parseCsv(text, APP_FIELDS, "gpu_uuid");
  const processes: GpuProcess[] = [];
  for (const row of table.rows) {
    if (row.length < 4)
      throw new GpuProbeError(
        "NVIDIA_SMI_UNPARSABLE",
        `nvidia-smi printed a line that is not a process row: ${JSON.stringify(row.join(", ").slice(0, 200))}`,
        text,
      );
    const [gpuUuid = "", pidCell = ""] = row;
    const memoryCell = row[row.length - 1];
    if (!/^(GPU|MIG)-[0-9A-Za-z-]+$/.test(gpuUuid)) {
      throw new GpuProbeError(
        "NVIDIA_SMI_UNPARSABLE",
        `nvidia-smi printed a line that is not a process row: ${JSON.stringify(row.join(", ").slice(0, 200))}`,
        text,
      );
    }
    if (isAbsent(pidCell)) continue;
    if (!/^\d+$/.test(pidCell)) throw new GpuProbeError("NVIDIA_SMI_UNPARSABLE", `unexpected pid ${JSON.stringify(pidCell)}`, text);
    processes.push({
      gpuUuid,
      pid: Number(pidCell),
      name: row.slice(2, -1).join(", "),
      usedMemoryMib: mib(memoryCell, "used_memory", text),
    });
  }
  return processes;
}

/** Attach each process to its GPU by UUID; processes of no listed GPU are returned apart. */
export function attachProcesses(gpus: Omit<Gpu, "processes">[], processes: GpuProcess[]): { gpus: Gpu[]; unmatched: GpuProcess[] } {
  const byUuid = new Map(gpus.map((g) => [g.uuid, { ...g, processes: [] as GpuProcess[] }]));
  const unmatched: GpuProcess[] = [];
  for (const process of processes) {
    const gpu = byUuid.get(process.gpuUuid);
    if (gpu) gpu.processes.push(process);
    else unmatched.push(process);
  }
  return { gpus: [...byUuid.values()], unmatched };
}

/** The total CUDA (and vLLM) sees: memory.total − memory.reserved, when both are known. */
export function cudaTotalMib(gpu: Pick<Gpu, "memoryTotalMib" | "memoryReservedMib">): number | null {
  if (gpu.memoryTotalMib === null) return null;
  return gpu.memoryTotalMib - (gpu.memoryReservedMib ?? 0);
}
