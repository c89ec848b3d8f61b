import { join } from "node:path";
import { deadPid, testdir } from "@gpu-canary/testing";
import { NVIDIA_SMI_STANDIN, createHost, h200 } from "@gpu-canary/vllm-sim";
import { describe, expect, it } from "vitest";
import { createGpuProbe } from "./index.ts";

/** The probe against the simulated host's nvidia-smi, as a real process. */
async function probeOf(state: Parameters<typeof createHost>[1], timeoutMs = 10_000) {
  const path = join(await testdir(), "host.json");
  await createHost(path, state);
  return createGpuProbe({ executable: NVIDIA_SMI_STANDIN, timeoutMs, env: { GPU_CANARY_SIM_HOST: path } });
}

describe("gpu-probe against the simulated host", () => {
  it("reports two H200s, production's processes on GPU 0, and drops a dead process", async () => {
    const dead = deadPid();
    const probe = await probeOf({
      gpus: [h200(0), h200(1)],
      processes: [
        { gpu_index: 0, pid: process.pid, name: "VLLM::EngineCore", used_memory_mib: 120_000 },
        { gpu_index: 0, pid: process.ppid, name: "python3 whisper, small", used_memory_mib: 2_100 },
        { gpu_index: 1, pid: dead, name: "gone", used_memory_mib: 50_000 },
      ],
    });
    const report = await probe.report();
    expect(report.gpus.map((g) => [g.index, g.memoryTotalMib, g.memoryReservedMib, g.memoryUsedMib, g.memoryFreeMib])).toEqual([
      [0, 143771, 623, 122100, 21048],
      [1, 143771, 623, 0, 143148],
    ]);
    expect(report.gpus[0]?.processes.map((p) => p.name)).toEqual(["VLLM::EngineCore", "python3 whisper? small"]);
  });

  it("falls back for a driver without memory.reserved", async () => {
    const report = await (await probeOf({ supports_reserved: false, gpus: [h200(0)] })).report();
    expect(report.reservedKnown).toBe(false);
    expect(report.gpus[0]?.memoryReservedMib).toBeNull();
  });

  it.each([
    ["driver-not-loaded", "NVIDIA_DRIVER_NOT_LOADED"],
    ["no-devices", "NO_GPUS_FOUND"],
    ["nvml-mismatch", "NVML_VERSION_MISMATCH"],
    ["garbage", "NVIDIA_SMI_UNPARSABLE"],
  ] as const)("reports the %s failure as %s", async (fail, code) => {
    await expect((await probeOf({ fail, gpus: [h200(0)] })).report()).rejects.toMatchObject({ code });
  });

  it("reports nvidia-smi as not found when KLR_NVIDIA_SMI names no file, and one that cannot run as failed", async () => {
    const dir = await testdir();
    await expect(createGpuProbe({ executable: join(dir, "no-nvidia-smi") }).report()).rejects.toMatchObject({
      code: "NVIDIA_SMI_NOT_FOUND",
    });
    await expect(createGpuProbe({ executable: dir }).report()).rejects.toMatchObject({ code: "NVIDIA_SMI_FAILED" });
  });

  it("kills a hung nvidia-smi after the timeout", async () => {
    const started = Date.now();
    await expect((await probeOf({ fail: "hang", gpus: [h200(0)] }, 1500)).report()).rejects.toMatchObject({ code: "NVIDIA_SMI_TIMEOUT" });
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
