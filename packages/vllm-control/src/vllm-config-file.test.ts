import { readFileSync, statSync } from "node:fs";
import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { commandLineProblems, execStartArgvs, readVllmConfig, withGpuMemoryUtilization, writeVllmConfig } from "./vllm-config-file.ts";

/** A production config as an operator keeps it: comments, other keys, a list, vLLM's dash spelling. */
const CONFIG = `# vLLM for the support bot — owned by ops; gpu-canary tunes gpu-memory-utilization only
model: /srv/models/llama-3.1-8b   # the weights
served-model-name: support
gpu-memory-utilization: 0.7 # tuned nightly
max-num-seqs: 64
allowed-origins:
  - https://support.example.com
`;

async function file(text: string) {
  const path = join(await testdir(), "vllm.yaml");
  await writeFile(path, text);
  return path;
}

describe("production vLLM's --config file", () => {
  it("reads the utilization, under either spelling vLLM takes", async () => {
    expect((await readVllmConfig(await file(CONFIG))).gpuMemoryUtilization).toBe(0.7);
    expect((await readVllmConfig(await file("gpu_memory_utilization: 0.85\n"))).gpuMemoryUtilization).toBe(0.85);
    expect((await readVllmConfig(await file("# nothing tuned yet\nmax-num-seqs: 8\n"))).gpuMemoryUtilization).toBeNull();
    expect((await readVllmConfig(await file(""))).gpuMemoryUtilization).toBeNull();
  });

  it("changes the utilization alone: every other key, comment and the layout stay", async () => {
    const path = await file(CONFIG);
    const changed = withGpuMemoryUtilization(path, CONFIG, 0.78);
    expect(changed).toBe(CONFIG.replace("gpu-memory-utilization: 0.7 # tuned nightly", "gpu-memory-utilization: 0.78 # tuned nightly"));
    const underscored = withGpuMemoryUtilization(path, "# mine\ngpu_memory_utilization: 0.9\n", 0.8);
    expect(underscored).toBe("# mine\ngpu_memory_utilization: 0.8\n");
    expect(withGpuMemoryUtilization(path, "max-num-seqs: 8\n", 0.8)).toBe("max-num-seqs: 8\ngpu-memory-utilization: 0.8\n");
    expect(() => withGpuMemoryUtilization(path, CONFIG, 1.2)).toThrow(RangeError);
  });

  it("writes atomically, keeping the file's mode, and never writes what vLLM could not load", async () => {
    const path = await file(CONFIG);
    await chmod(path, 0o640);
    await writeVllmConfig(path, withGpuMemoryUtilization(path, CONFIG, 0.75));
    expect((await readVllmConfig(path)).gpuMemoryUtilization).toBe(0.75);
    expect(statSync(path).mode & 0o777).toBe(0o640);
    await expect(writeVllmConfig(path, "gpu-memory-utilization: [")).rejects.toThrow(`${path}: not YAML`);
    expect(readFileSync(path, "utf8")).toContain("gpu-memory-utilization: 0.75");
  });

  it("fails closed naming the file: missing, not YAML, not a mapping, a value vLLM refuses, both spellings", async () => {
    const dir = await testdir();
    await expect(readVllmConfig(join(dir, "absent.yaml"))).rejects.toMatchObject({
      code: "STATE_UNREADABLE",
      message: `${join(dir, "absent.yaml")}: does not exist`,
    });
    for (const [text, reason] of [
      ["gpu-memory-utilization: [0.7", "not YAML"],
      ["- just\n- a list\n", "is YAML but not a mapping of vLLM's arguments"],
      ["gpu-memory-utilization: high\n", 'gpu-memory-utilization is "high": vLLM wants a fraction above 0 and at most 1'],
      ["gpu-memory-utilization: 1.5\n", "gpu-memory-utilization is 1.5"],
      ["gpu-memory-utilization: 0.7\ngpu_memory_utilization: 0.8\n", "sets both gpu-memory-utilization and gpu_memory_utilization"],
    ] as const) {
      const path = await file(text);
      const error = (await readVllmConfig(path).catch((e: unknown) => e)) as Error & { code: string };
      expect(error.code).toBe("STATE_UNREADABLE");
      expect(error.message.startsWith(`${path}: ${reason}`)).toBe(true);
      // one line: doctor and production print it in a column
      expect(error.message).not.toContain("\n");
    }
  });
});

describe("production's command line", () => {
  const path = "/etc/vllm/support.yaml";
  it("must pass --config <the file> and no tuned flag beside it", () => {
    expect(commandLineProblems(["vllm", "serve", "--config", path], path)).toEqual([]);
    expect(commandLineProblems(["vllm", "serve", `--config=${path}`, "--port", "8000"], path)).toEqual([]);
    expect(commandLineProblems(["vllm", "serve", "/srv/model"], path)).toEqual([`it passes no --config ${path}`]);
    expect(commandLineProblems(["vllm", "serve", "--config", "/tmp/other.yaml"], path)).toEqual([
      `it passes --config /tmp/other.yaml, not ${path}`,
    ]);
    expect(commandLineProblems(["vllm", "serve", "--config", path, "--gpu-memory-utilization", "0.9"], path)).toEqual([
      "it also passes --gpu-memory-utilization, which vLLM takes over the file's value",
    ]);
    expect(commandLineProblems(["vllm", "serve", "--config", path, "--gpu_memory_utilization=0.9"], path)).toEqual([
      "it also passes --gpu_memory_utilization, which vLLM takes over the file's value",
    ]);
  });

  it("is read from systemctl show -p ExecStart as systemd prints it", () => {
    // systemd's format: `{ path=… ; argv[]=… ; ignore_errors=no ; start_time=[n/a] ; … }`, one per command
    const shown =
      "ExecStart={ path=/opt/vllm/bin/vllm ; argv[]=/opt/vllm/bin/vllm serve --config /etc/vllm/support.yaml --port 8000 ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\n";
    expect(execStartArgvs(shown)).toEqual([["/opt/vllm/bin/vllm", "serve", "--config", "/etc/vllm/support.yaml", "--port", "8000"]]);
    expect(execStartArgvs("ExecStart=\n")).toEqual([]);
  });
});
