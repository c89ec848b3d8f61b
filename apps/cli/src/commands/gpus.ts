import type { Gpu, GpuProcess } from "@gpu-canary/gpu-probe";
import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { hostEnv, loadSettings } from "../settings.ts";

const processJson = (p: GpuProcess) => ({ pid: p.pid, name: p.name, used_memory_mib: p.usedMemoryMib, gpu_uuid: p.gpuUuid });
const n = (value: number | null) => (value === null ? "?" : String(value));

export async function runGpus(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const { createGpuProbe, cudaTotalMib } = await import("@gpu-canary/gpu-probe");
  const probe = createGpuProbe({ executable: settings.config.nvidiaSmi, env: hostEnv(io) });
  const report = await probe.report();
  const gpuJson = (g: Gpu) => ({
    index: g.index,
    uuid: g.uuid,
    name: g.name,
    memory_total_mib: g.memoryTotalMib,
    memory_reserved_mib: g.memoryReservedMib,
    memory_used_mib: g.memoryUsedMib,
    memory_free_mib: g.memoryFreeMib,
    cuda_total_mib: cudaTotalMib(g),
    processes: g.processes.map(processJson),
  });
  answer(io, options, { gpus: report.gpus.map(gpuJson), unmatched_processes: report.unmatchedProcesses.map(processJson) }, () => {
    const lines: string[] = [];
    for (const g of report.gpus) {
      const reserved = g.memoryReservedMib === null ? "reserved not reported" : `reserved ${g.memoryReservedMib}`;
      lines.push(`GPU ${g.index}  ${g.name}  ${g.uuid}`);
      lines.push(
        `  memory MiB: total ${n(g.memoryTotalMib)} (${reserved}; CUDA sees ${n(cudaTotalMib(g))})  used ${n(g.memoryUsedMib)}  free ${n(g.memoryFreeMib)}`,
      );
      if (g.processes.length === 0) lines.push("  no compute processes");
      for (const p of g.processes)
        lines.push(
          `  pid ${String(p.pid).padEnd(8)} ${p.usedMemoryMib === null ? "? (not attributed)" : `${p.usedMemoryMib} MiB`}  ${p.name}`,
        );
    }
    for (const p of report.unmatchedProcesses) lines.push(`process on an unlisted GPU ${p.gpuUuid}: pid ${p.pid} ${p.name}`);
    return lines.join("\n");
  });
  return 0;
}
