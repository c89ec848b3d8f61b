import { type HostState, freeMib, liveProcesses, usedMib } from "./host-state.ts";

/**
 * The answers of the nvidia-smi stand-in, in the real tool's formats (as captured from
 * drivers 580-610 in the nvidia_gpu_exporter project's captures): ", "-separated CSV, headers
 * with units in brackets, values with " MiB" unless nounits, "[N/A]" for unknowns, errors on
 * stdout with the driver's exit codes.
 */
export interface StandinAnswer {
  stdout: string;
  code: number;
  hang?: boolean;
}

const GPU_FIELDS: Record<string, { header: string; unit?: string }> = {
  index: { header: "index" },
  uuid: { header: "uuid" },
  name: { header: "name" },
  "memory.total": { header: "memory.total", unit: "MiB" },
  "memory.reserved": { header: "memory.reserved", unit: "MiB" },
  "memory.used": { header: "memory.used", unit: "MiB" },
  "memory.free": { header: "memory.free", unit: "MiB" },
};

const APP_FIELDS: Record<string, { header: string; unit?: string }> = {
  gpu_uuid: { header: "gpu_uuid" },
  gpu_name: { header: "gpu_name" },
  pid: { header: "pid" },
  process_name: { header: "process_name" },
  name: { header: "process_name" },
  used_memory: { header: "used_gpu_memory", unit: "MiB" },
  used_gpu_memory: { header: "used_gpu_memory", unit: "MiB" },
};

export const FAILURE_OUTPUT = {
  // Text: NVIDIA/nvidia-docker#988, GoogleCloudPlatform/compute-gpu-installation#18; exit 9 = driver not loaded (nvidia-smi(1)).
  "driver-not-loaded": {
    stdout:
      "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n\n",
    code: 9,
  },
  // exit 6 = the query was unsuccessful (nvidia-smi(1)).
  "no-devices": { stdout: "No devices were found\n", code: 6 },
  // The two-line form and exit 18: anderskm/gputil#55.
  "nvml-mismatch": { stdout: "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161\n", code: 18 },
  garbage: { stdout: "Segmentation fault in libnvidia-ml\n\x00\x01 something else entirely\n", code: 0 },
} as const;

function format(value: string | number, unit: string | undefined, nounits: boolean): string {
  return unit && !nounits && typeof value === "number" ? `${value} ${unit}` : String(value);
}

export function answer(args: readonly string[], state: HostState): StandinAnswer {
  if (state.fail === "hang") return { stdout: "", code: 0, hang: true };
  if (state.fail) return { ...FAILURE_OUTPUT[state.fail] };
  if (args.includes("--version"))
    return { stdout: `NVIDIA-SMI version  : ${state.driver_version}\nDRIVER version      : ${state.driver_version}\n`, code: 0 };
  const formatArg = args.find((a) => a.startsWith("--format="));
  const formats = (formatArg ?? "").slice("--format=".length).split(",");
  const query = args.find((a) => a.startsWith("--query-gpu=") || a.startsWith("--query-compute-apps="));
  if (!query || !formats.includes("csv")) {
    return { stdout: "This stand-in answers --query-gpu and --query-compute-apps with --format=csv[,noheader][,nounits].\n", code: 2 };
  }
  const noheader = formats.includes("noheader");
  const nounits = formats.includes("nounits");
  const [kind, list = ""] = query.split("=");
  const fields = list.split(",");
  const known = kind === "--query-gpu" ? GPU_FIELDS : APP_FIELDS;
  for (const field of fields) {
    if (!(field in known) || (field === "memory.reserved" && !state.supports_reserved)) {
      return { stdout: `Field "${field}" is not a valid field to query.\n\n`, code: 2 };
    }
  }
  const header = fields.map((f) => {
    const spec = known[f];
    return spec?.unit ? `${spec.header} [${spec.unit}]` : (spec?.header ?? f);
  });
  const live = liveProcesses(state);
  const rows: string[][] =
    kind === "--query-gpu"
      ? state.gpus.map((gpu) =>
          fields.map((f) => {
            const values: Record<string, string | number> = {
              index: gpu.index,
              uuid: gpu.uuid,
              name: gpu.name,
              "memory.total": gpu.memory_total_mib,
              "memory.reserved": gpu.memory_reserved_mib,
              "memory.used": usedMib(state, gpu, live),
              "memory.free": freeMib(state, gpu, live),
            };
            return format(values[f] ?? "[N/A]", known[f]?.unit, nounits);
          }),
        )
      : live.map((p) => {
          const gpu = state.gpus.find((g) => g.index === p.gpu_index);
          return fields.map((f) => {
            const values: Record<string, string | number> = {
              gpu_uuid: gpu?.uuid ?? "[N/A]",
              gpu_name: gpu?.name ?? "[N/A]",
              pid: p.pid,
              // Current drivers print "?" where a process name has a comma.
              process_name: p.name.replaceAll(",", "?"),
              name: p.name.replaceAll(",", "?"),
              // Under MIG the driver does not attribute memory per process.
              used_memory: gpu?.mig ? "[N/A]" : p.used_memory_mib,
              used_gpu_memory: gpu?.mig ? "[N/A]" : p.used_memory_mib,
            };
            return format(values[f] ?? "[N/A]", known[f]?.unit, nounits);
          });
        });
  const lines = [...(noheader ? [] : [header.join(", ")]), ...rows.map((r) => r.join(", "))];
  return { stdout: lines.length > 0 ? `${lines.join("\n")}\n` : "", code: 0 };
}
