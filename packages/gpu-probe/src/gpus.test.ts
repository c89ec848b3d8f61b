import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GpuProbeError } from "./errors.ts";
import { GPU_FIELDS, GPU_FIELDS_OLD_DRIVER, attachProcesses, cudaTotalMib, parseComputeApps, parseGpus } from "./gpus.ts";

// Real outputs. Where a capture queried more fields than we do, the row is its projection onto ours.
// H200, driver 610.43.02: utkuozdemir/nvidia_gpu_exporter internal/captures/linux-x86_64__nvidia-h200__610.43.02.txt
const H200_HEADER = "index, uuid, name, memory.total [MiB], memory.reserved [MiB], memory.used [MiB], memory.free [MiB]";
const H200_ROW = "0, GPU-00000000-0000-0000-0000-000000000000, NVIDIA H200, 143771 MiB, 623 MiB, 0 MiB, 143149 MiB";

describe("parseGpus", () => {
  it("reads the header-and-units form, matching columns by header name", () => {
    const [gpu] = parseGpus(`${H200_HEADER}\n${H200_ROW}\n`, GPU_FIELDS);
    expect(gpu).toEqual({
      index: 0,
      uuid: "GPU-00000000-0000-0000-0000-000000000000",
      name: "NVIDIA H200",
      memoryTotalMib: 143771,
      memoryReservedMib: 623,
      memoryUsedMib: 0,
      memoryFreeMib: 143149,
    });
    expect(gpu && cudaTotalMib(gpu)).toBe(143148);
  });

  it("reads columns by header even when a driver orders them differently", () => {
    const text =
      "uuid, index, memory.free [MiB], memory.used [MiB], memory.total [MiB], name\nGPU-abc, 1, 100 MiB, 20 MiB, 120 MiB, Tesla T4\n";
    // the header's first cell is not "index", so it is read as data: the row must then be rejected, never misread
    expect(() => parseGpus(text, GPU_FIELDS)).toThrow(GpuProbeError);
  });

  it("reads the noheader,nounits form with CRLF line ends", () => {
    const text =
      "0, GPU-22b2c6ac-2d49-4863-197c-9c469071178a, GeForce RTX 2080, 7979, 241, 503, 7235\r\n1, GPU-1b2c, NVIDIA A10G, 23028, 508, 0, 22519\r\n";
    const gpus = parseGpus(text, GPU_FIELDS);
    expect(gpus.map((g) => [g.index, g.name, g.memoryTotalMib, g.memoryFreeMib])).toEqual([
      [0, "GeForce RTX 2080", 7979, 7235],
      [1, "NVIDIA A10G", 23028, 22519],
    ]);
  });

  it("reads unknown values as null, never 0: [N/A], [Not Supported], N/A, [Insufficient Permissions]", () => {
    // "[N/A]" for fields a card cannot give: Ricks-Lab/gpu-utils#83 (driver 440.64); "[Not Supported]" on GeForce cards.
    const text = "0, GPU-abc, NVIDIA GeForce RTX 3090, 24576, [N/A], [Not Supported], N/A\n";
    const [gpu] = parseGpus(text, GPU_FIELDS);
    expect(gpu).toMatchObject({ memoryTotalMib: 24576, memoryReservedMib: null, memoryUsedMib: null, memoryFreeMib: null });
  });

  it("reads an old driver's answer without memory.reserved, reserved unknown", () => {
    const [gpu] = parseGpus("0, GPU-abc, Tesla V100-SXM2-16GB, 16160, 0, 16160\n", GPU_FIELDS_OLD_DRIVER);
    expect(gpu).toMatchObject({ memoryTotalMib: 16160, memoryReservedMib: null, memoryFreeMib: 16160 });
    expect(gpu && cudaTotalMib(gpu)).toBe(16160);
  });

  it("answers no rows for an empty output", () => {
    expect(parseGpus("", GPU_FIELDS)).toEqual([]);
    expect(parseGpus(`${H200_HEADER}\n`, GPU_FIELDS)).toEqual([]);
  });

  it.each([
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.",
    "No devices were found",
    "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161",
    "0, GPU-abc, NVIDIA H200, lots, 623, 0, 143149",
  ])("never reads an error text as a GPU row: %j", (text) => {
    expect(() => parseGpus(text, GPU_FIELDS)).toThrow(GpuProbeError);
  });

  it("never returns a row that does not look like a GPU, whatever the text", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          for (const gpu of parseGpus(text, GPU_FIELDS)) {
            expect(gpu.uuid).toMatch(/^(GPU|MIG)-/);
            expect(Number.isInteger(gpu.index)).toBe(true);
          }
        } catch (error) {
          expect(error).toBeInstanceOf(GpuProbeError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parseComputeApps", () => {
  it("reads names with spaces, quotes, unicode and the '?' a current driver prints for a comma", () => {
    // H200 capture rows: utkuozdemir/nvidia_gpu_exporter internal/nvidiasmi/computeapps_test.go
    const text = [
      "gpu_uuid, pid, process_name, used_gpu_memory [MiB]",
      "GPU-ae3738d5-9aa2-e1c9-53be-65b6d373d3d9, 10525, /root/tools/memhog, 1542 MiB",
      "GPU-ae3738d5-9aa2-e1c9-53be-65b6d373d3d9, 10529, /root/tools/memhög ünïcode, 818 MiB",
      "GPU-ae3738d5-9aa2-e1c9-53be-65b6d373d3d9, 10526, /root/tools/mem? hog, 818 MiB",
      'GPU-ae3738d5-9aa2-e1c9-53be-65b6d373d3d9, 10528, /root/tools/mem "q" hog, 818 MiB',
    ].join("\n");
    expect(parseComputeApps(text).map((p) => [p.pid, p.name, p.usedMemoryMib])).toEqual([
      [10525, "/root/tools/memhog", 1542],
      [10529, "/root/tools/memhög ünïcode", 818],
      [10526, "/root/tools/mem? hog", 818],
      [10528, '/root/tools/mem "q" hog', 818],
    ]);
  });

  it("keeps a comma in a name from an older driver, reading from the outside in", () => {
    const processes = parseComputeApps("GPU-abc, 42, /root/tools/mem, hog, 818\nGPU-abc, 43, VLLM::EngineCore, 70123\n");
    expect(processes.map((p) => p.name)).toEqual(["/root/tools/mem, hog", "VLLM::EngineCore"]);
  });

  it("reads unattributed memory (MIG, WDDM) as null and skips rows the driver could not read", () => {
    const text = [
      "GPU-abc, 2056, python3, [N/A]",
      "GPU-ae3738d5-9aa2-e1c9-53be-65b6d373d3d9, [Insufficient Permissions], [Insufficient Permissions], [Insufficient Permissions]",
    ].join("\n");
    expect(parseComputeApps(text)).toEqual([{ gpuUuid: "GPU-abc", pid: 2056, name: "python3", usedMemoryMib: null }]);
  });

  it("answers no processes for an empty output or a header alone", () => {
    expect(parseComputeApps("")).toEqual([]);
    expect(parseComputeApps("gpu_uuid, pid, process_name, used_gpu_memory [MiB]\n")).toEqual([]);
  });

  it("rejects lines that are not process rows", () => {
    expect(() => parseComputeApps("No devices were found")).toThrow(GpuProbeError);
    expect(() => parseComputeApps("GPU-abc, abc, x, 1")).toThrow(GpuProbeError);
  });

  it("attaches processes to their GPU and keeps strays apart", () => {
    const gpus = parseGpus("0, GPU-a, A, 100, 1, 10, 89\n1, GPU-b, B, 100, 1, 0, 99\n", GPU_FIELDS);
    const { gpus: attached, unmatched } = attachProcesses(gpus, parseComputeApps("GPU-a, 7, vllm, 10\nGPU-z, 8, ghost, 1\n"));
    expect(attached[0]?.processes.map((p) => p.pid)).toEqual([7]);
    expect(attached[1]?.processes).toEqual([]);
    expect(unmatched.map((p) => p.pid)).toEqual([8]);
  });
});
