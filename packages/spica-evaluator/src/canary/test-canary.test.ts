import { loadConfig, requireConfig } from "@gpu-canary/config";
import { testdir, until } from "@gpu-canary/testing";
import { launchCanary, readEnviron } from "@gpu-canary/vllm-control";
import { describe, expect, it, onTestFinished } from "vitest";
import { deathLine, launch } from "./test-canary.ts";

// vLLM's memory account after profiling (vllm/v1/worker/gpu_worker.py `compile_or_warm_up_model`,
// vllm-project/vllm@35d5cda, INFO in 0.11): its suggested `--kv-cache-memory` is a flag vLLM's CLI
// does not have; the real one is `--kv-cache-memory-bytes` (vllm-project/vllm#52600).
const ACCOUNT =
  "(Worker_TP0 pid=1806413) INFO 10-23 15:14:56 [gpu_worker.py:391] Free memory on device (139.21/139.81 GiB) on startup. Desired GPU memory utilization is (0.9, 125.83 GiB). Actual usage is 74.28 GiB for weight, 5.58 GiB for peak activation, 1.38 GiB for non-torch memory, and 2.37 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory=45175492096` to fit into requested memory, or `--kv-cache-memory=59540753920` to fully utilize gpu memory.";

describe("the canary's death line", () => {
  it("names --kv-cache-memory-bytes where the canary's last words were vLLM's suggestion", async () => {
    // A canary that prints vLLM's account and is killed without a word more (the kernel's OOM killer).
    const canary = launchCanary({
      vllmCommand: `sh -c 'printf "%s\\n" "$0"; kill -KILL $$' '${ACCOUNT.replaceAll("'", "")}'`,
      modelPath: "/nonexistent",
      port: 1,
      gpuMemoryUtilization: 0.5,
      gpuIndex: 0,
    });
    expect(await canary.exited).toMatchObject({ signal: "SIGKILL" });
    const line = deathLine(canary);
    expect(line).toContain("`--kv-cache-memory-bytes=45175492096` to fit into requested memory");
    expect(line).not.toMatch(/--kv-cache-memory(?!-bytes)/);
  });
});

describe("the canary's environment", () => {
  it("is production's (KLR_VLLM_EXTRA_ENV): on vLLM 0.8–0.10 VLLM_USE_V1=0 is another engine", async () => {
    const home = await testdir();
    const settings = { KLR_HOME: home, KLR_VLLM_COMMAND: "sh -c 'sleep 30'", KLR_VLLM_EXTRA_ENV: "VLLM_USE_V1=0" };
    const { config } = requireConfig(loadConfig({ env: settings, homeDir: home }));
    const canary = launch({ config, env: { GPU_CANARY_SIM_HOST: "/x" } }, { vllmMemoryUtil: 0.7, whisperModelSize: "small" }, 0);
    onTestFinished(() => canary.stop(1000).then(() => undefined));
    // Read once it runs the command (before its exec the child still shows this process's environment).
    const env = await until(() => readEnviron(canary.pid)?.VLLM_USE_V1 !== undefined && readEnviron(canary.pid), "the canary to start", {
      timeoutMs: 5000,
    });
    expect(env).toMatchObject({ VLLM_USE_V1: "0", GPU_CANARY_SIM_HOST: "/x", CUDA_VISIBLE_DEVICES: "0" });
  });
});
