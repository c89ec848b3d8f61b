import { describe, expect, it } from "vitest";
import { canaryArgv, splitCommand } from "./canary-launcher.ts";

const base = {
  vllmCommand: "python3 -m vllm.entrypoints.openai.api_server",
  modelPath: "/home/kloros/models/llm/current",
  port: 9011,
  gpuMemoryUtilization: 0.75,
  gpuIndex: 1,
};

describe("canaryArgv", () => {
  it("appends the port, model and utilization to KLR_VLLM_COMMAND, as the checklist's manual canary does", () => {
    expect(canaryArgv(base)).toEqual([
      "python3",
      "-m",
      "vllm.entrypoints.openai.api_server",
      "--port",
      "9011",
      "--model",
      "/home/kloros/models/llm/current",
      "--gpu-memory-utilization",
      "0.75",
    ]);
  });

  it("passes production's memory-shaping settings and extra flags", () => {
    const argv = canaryArgv({
      ...base,
      maxModelLen: 8192,
      maxNumSeqs: 64,
      maxNumBatchedTokens: 4096,
      kvCacheDtype: "fp8",
      extraArgs: "--enforce-eager --served-model-name 'my model'",
    });
    expect(argv.slice(9)).toEqual([
      "--max-model-len",
      "8192",
      "--max-num-seqs",
      "64",
      "--max-num-batched-tokens",
      "4096",
      "--kv-cache-dtype",
      "fp8",
      "--enforce-eager",
      "--served-model-name",
      "my model",
    ]);
  });

  it("splits with shell quoting rules and refuses what only a shell would do", () => {
    expect(splitCommand(`/opt/venv/bin/python3 -m "vllm.entrypoints.openai.api_server" --x 'a b'`, "KLR_VLLM_COMMAND")).toEqual([
      "/opt/venv/bin/python3",
      "-m",
      "vllm.entrypoints.openai.api_server",
      "--x",
      "a b",
    ]);
    for (const bad of [
      "vllm serve | tee log",
      "vllm serve > log",
      "vllm serve; rm -rf /",
      "vllm serve && x",
      "vllm serve --x 'a",
      "vllm $X",
    ]) {
      expect(() => splitCommand(bad, "KLR_VLLM_COMMAND")).toThrow(expect.objectContaining({ code: "VLLM_COMMAND_INVALID", kind: "usage" }));
    }
    expect(() => canaryArgv({ ...base, vllmCommand: "" })).toThrow(expect.objectContaining({ code: "VLLM_COMMAND_INVALID" }));
  });
});
