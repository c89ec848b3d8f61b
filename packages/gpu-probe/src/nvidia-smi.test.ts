import { describe, expect, it } from "vitest";
import { type Exec, type RunResult, createGpuProbe } from "./nvidia-smi.ts";

const ok = (stdout: string): RunResult => ({ stdout, stderr: "", exitCode: 0, timedOut: false, notFound: false });

function fakeExec(answers: ((args: readonly string[]) => RunResult)[]): { exec: Exec; calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    exec: (_file, args) => {
      calls.push([...args]);
      const next = answers.shift();
      if (!next) throw new Error("unexpected call");
      return Promise.resolve(next(args));
    },
  };
}

describe("createGpuProbe", () => {
  it("asks the documented queries with argument arrays and attaches processes", async () => {
    const { exec, calls } = fakeExec([
      () => ok("0, GPU-a, NVIDIA H200, 143771, 623, 120000, 23148\n"),
      () => ok("GPU-a, 4242, VLLM::EngineCore, 120000\n"),
    ]);
    const report = await createGpuProbe({ executable: "nvidia-smi", exec }).report();
    expect(calls).toEqual([
      ["--query-gpu=index,uuid,name,memory.total,memory.reserved,memory.used,memory.free", "--format=csv,noheader,nounits"],
      ["--query-compute-apps=gpu_uuid,pid,process_name,used_memory", "--format=csv,noheader,nounits"],
    ]);
    expect(report.gpus[0]?.processes[0]).toMatchObject({ pid: 4242, usedMemoryMib: 120000 });
    expect(report.reservedKnown).toBe(true);
  });

  it("asks again without memory.reserved on a driver that does not know it", async () => {
    const { exec, calls } = fakeExec([
      () => ({
        stdout: 'Field "memory.reserved" is not a valid field to query.\n\n',
        stderr: "",
        exitCode: 2,
        timedOut: false,
        notFound: false,
      }),
      () => ok("0, GPU-a, Tesla V100, 16160, 0, 16160\n"),
      () => ok(""),
    ]);
    const report = await createGpuProbe({ executable: "nvidia-smi", exec }).report();
    expect(calls[1]?.[0]).toBe("--query-gpu=index,uuid,name,memory.total,memory.used,memory.free");
    expect(report.reservedKnown).toBe(false);
    expect(report.gpus[0]?.memoryReservedMib).toBeNull();
  });

  it.each([
    [{ stdout: "", stderr: "", exitCode: undefined, timedOut: false, notFound: true }, "NVIDIA_SMI_NOT_FOUND", "KLR_NVIDIA_SMI"],
    [{ stdout: "", stderr: "", exitCode: undefined, timedOut: true, notFound: false }, "NVIDIA_SMI_TIMEOUT", "killed"],
    [
      {
        stdout:
          "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
        stderr: "",
        exitCode: 9,
        timedOut: false,
        notFound: false,
      },
      "NVIDIA_DRIVER_NOT_LOADED",
      `nvidia-smi said: "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.`,
    ],
    [
      { stdout: "No devices were found\n", stderr: "", exitCode: 6, timedOut: false, notFound: false },
      "NO_GPUS_FOUND",
      'found no GPU — nvidia-smi said: "No devices were found"',
    ],
    [
      {
        stdout: "Failed to initialize NVML: Driver/library version mismatch\nNVML library version: 535.161\n",
        stderr: "",
        exitCode: 18,
        timedOut: false,
        notFound: false,
      },
      "NVML_VERSION_MISMATCH",
      'nvidia-smi said: "Failed to initialize NVML: Driver/library version mismatch"',
    ],
    [{ stdout: "", stderr: "Segmentation fault", exitCode: 139, timedOut: false, notFound: false }, "NVIDIA_SMI_FAILED", "exited with 139"],
  ] as const)("reports %j plainly as %s", async (result, code, words) => {
    const { exec } = fakeExec([() => result]);
    const error = await createGpuProbe({ executable: "/usr/bin/nvidia-smi", exec })
      .report()
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ code, kind: "fault", message: expect.stringContaining(words) });
    expect((error as { hint: string }).hint).not.toBe("");
  });
});
