import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { deadPid, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createHost, h200, readHost, registerProcess, unregisterProcess } from "./host-state.ts";
import { NVIDIA_SMI_STANDIN } from "./index.ts";
import { answer } from "./nvidia-smi-standin.ts";

const FIELDS = "--query-gpu=index,uuid,name,memory.total,memory.reserved,memory.used,memory.free";

describe("the nvidia-smi stand-in", () => {
  const state = { driver_version: "610.43.02", supports_reserved: true, fail: null, gpus: [h200(0)], processes: [] };

  it("answers in the real header-and-units form, and without them on request", () => {
    expect(answer([FIELDS, "--format=csv"], state).stdout).toBe(
      "index, uuid, name, memory.total [MiB], memory.reserved [MiB], memory.used [MiB], memory.free [MiB]\n0, GPU-00000000-0000-0000-0000-000000000000, NVIDIA H200, 143771 MiB, 623 MiB, 0 MiB, 143148 MiB\n",
    );
    expect(answer([FIELDS, "--format=csv,noheader,nounits"], state).stdout).toBe(
      "0, GPU-00000000-0000-0000-0000-000000000000, NVIDIA H200, 143771, 623, 0, 143148\n",
    );
  });

  it("refuses an unknown field, and memory.reserved on an old driver, with nvidia-smi's text", () => {
    expect(answer(["--query-gpu=index,bogus", "--format=csv"], state)).toEqual({
      stdout: 'Field "bogus" is not a valid field to query.\n\n',
      code: 2,
    });
    expect(answer([FIELDS, "--format=csv"], { ...state, supports_reserved: false }).stdout).toContain(
      'Field "memory.reserved" is not a valid field',
    );
  });

  it("prints the used_gpu_memory header, a '?' for a comma, and [N/A] memory under MIG", () => {
    const withApps = {
      ...state,
      gpus: [h200(0), { ...h200(1), mig: true }],
      processes: [
        { gpu_index: 0, pid: process.pid, name: "a, b", used_memory_mib: 5 },
        { gpu_index: 1, pid: process.pid, name: "c", used_memory_mib: 7 },
      ],
    };
    expect(answer(["--query-compute-apps=gpu_uuid,pid,process_name,used_memory", "--format=csv"], withApps).stdout).toBe(
      `gpu_uuid, pid, process_name, used_gpu_memory [MiB]\nGPU-00000000-0000-0000-0000-000000000000, ${process.pid}, a? b, 5 MiB\nGPU-00000000-0000-0000-0000-000000000001, ${process.pid}, c, [N/A]\n`,
    );
  });

  it("fails like the real tool: text on stdout, the driver's exit code", () => {
    expect(answer([FIELDS, "--format=csv"], { ...state, fail: "driver-not-loaded" }).code).toBe(9);
    expect(answer([FIELDS, "--format=csv"], { ...state, fail: "no-devices" }).stdout).toBe("No devices were found\n");
    expect(answer([FIELDS, "--format=csv"], { ...state, fail: "hang" }).hang).toBe(true);
  });

  it("runs as an executable over a host file that processes register in, forgetting dead ones", async () => {
    const path = join(await testdir(), "host.json");
    await createHost(path, { gpus: [h200(0)] });
    await registerProcess(path, { gpu_index: 0, pid: process.pid, name: "vllm", used_memory_mib: 1000 });
    const dead = deadPid();
    await registerProcess(path, { gpu_index: 0, pid: dead, name: "ghost", used_memory_mib: 9000 });
    const run = spawnSync(NVIDIA_SMI_STANDIN, ["--query-gpu=index,memory.used", "--format=csv,noheader,nounits"], {
      env: { ...process.env, GPU_CANARY_SIM_HOST: path },
      encoding: "utf8",
    });
    expect(run.stdout).toBe("0, 1000\n");
    await unregisterProcess(path, process.pid);
    expect(readHost(path).processes.map((p) => p.name)).toEqual(["ghost"]);
  });
});
