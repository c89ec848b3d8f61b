import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { NVIDIA_SMI_STANDIN, createHost, h200 } from "@gpu-canary/vllm-sim";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

async function simHost(state: Parameters<typeof createHost>[1]) {
  const home = await testdir();
  const host = join(home, "host.json");
  await createHost(host, state);
  return { KLR_HOME: home, KLR_NVIDIA_SMI: NVIDIA_SMI_STANDIN, GPU_CANARY_SIM_HOST: host };
}

describe("gpu-canary gpus", () => {
  it("lists the simulated host's GPUs with the contract's JSON keys", async () => {
    const env = await simHost({
      gpus: [h200(0)],
      processes: [{ gpu_index: 0, pid: process.pid, name: "VLLM::EngineCore", used_memory_mib: 120_000 }],
    });
    const result = await cli(["gpus", "--json"], env);
    expect(result.code).toBe(0);
    expect(result.json()).toEqual({
      gpus: [
        {
          index: 0,
          uuid: "GPU-00000000-0000-0000-0000-000000000000",
          name: "NVIDIA H200",
          memory_total_mib: 143771,
          memory_reserved_mib: 623,
          memory_used_mib: 120000,
          memory_free_mib: 23148,
          cuda_total_mib: 143148,
          processes: [
            { pid: process.pid, name: "VLLM::EngineCore", used_memory_mib: 120000, gpu_uuid: "GPU-00000000-0000-0000-0000-000000000000" },
          ],
        },
      ],
      unmatched_processes: [],
    });
    const text = await cli(["gpus"], env);
    expect(text.stdout).toContain("GPU 0  NVIDIA H200");
    expect(text.stdout).toContain("CUDA sees 143148");
  });

  it("exits 4 with a plain message for each failure", async () => {
    for (const [fail, words] of [
      ["driver-not-loaded", "cannot talk to the NVIDIA driver"],
      ["no-devices", "found no GPU"],
      ["nvml-mismatch", "different versions"],
    ] as const) {
      const result = await cli(["gpus"], await simHost({ fail, gpus: [h200(0)] }));
      expect(result.code).toBe(4);
      expect(result.stderr).toContain(words);
      expect(result.stderr).toContain("hint:");
    }
  });

  it("names the path and KLR_NVIDIA_SMI when the executable is missing", async () => {
    const home = await testdir();
    const result = await cli(["gpus", "--json"], { KLR_HOME: home, KLR_NVIDIA_SMI: "/opt/none/nvidia-smi" });
    expect(result.code).toBe(4);
    expect(result.json().error).toMatchObject({ code: "NVIDIA_SMI_NOT_FOUND", message: expect.stringContaining("/opt/none/nvidia-smi") });
    expect(result.json().error?.message).toContain("KLR_NVIDIA_SMI");
  });
});
