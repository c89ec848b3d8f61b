import { spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { freePort } from "./free-port.ts";
import { createHost, h200, readHost } from "./host-state.ts";
import { SIM_VLLM } from "./index.ts";
import { createSimSite } from "./sim-site.ts";

/** Start the simulated vLLM as a process; resolves once it serves (or exits). */
async function startVllm(args: string[], env: Record<string, string> = {}) {
  const child = spawn(SIM_VLLM, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  let code: number | null | undefined;
  const exited = new Promise<number | null>((resolve) =>
    child.on("exit", (c) => {
      code = c;
      resolve(c);
    }),
  );
  onTestFinished(async () => {
    if (code === undefined) {
      child.kill("SIGTERM");
      await exited;
    }
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes("Starting vLLM API server") && code === undefined && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 50));
  return { child, exited, out: () => out, err: () => err };
}

const cacheConfigInfo = async (port: number) =>
  /^vllm:cache_config_info\{(.*)\} 1\.0$/m.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())?.[1] ?? "";

describe("the simulated vLLM's --config FILE (vLLM's own YAML config file)", () => {
  it("serves with the file's utilization and flags, dash or underscore spelled, and takes its memory from the host", async () => {
    const dir = await testdir();
    const host = join(dir, "host.json");
    await createHost(host, { gpus: [h200(0)] });
    const config = join(dir, "vllm.yaml");
    await writeFile(
      config,
      "# production\ngpu_memory_utilization: 0.7\nmax-model-len: 4096\nserved-model-name: llm\nenforce-eager: true\n",
    );
    const port = freePort();
    const vllm = await startVllm(["--port", String(port), "--model", "/m", "--config", config], {
      GPU_CANARY_SIM_HOST: host,
      CUDA_VISIBLE_DEVICES: "0",
    });
    expect(vllm.out()).toContain("gpu_memory_utilization 0.7");
    expect(await cacheConfigInfo(port)).toContain('gpu_memory_utilization="0.7"');
    expect(readHost(host).processes.map((p) => p.used_memory_mib)).toEqual([Math.ceil(143148 * 0.7)]);
    const models = (await (await fetch(`http://127.0.0.1:${port}/v1/models`)).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(["llm"]);
    // max-model-len from the file: a request past 4096 tokens is refused.
    const tooLong = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "llm", prompt: "x", max_tokens: 5000 }),
    });
    expect(tooLong.status).toBe(400);
    expect(await tooLong.text()).toContain("maximum context length is 4096 tokens");
  }, 40_000);

  it("lets the command line win over the file", async () => {
    const dir = await testdir();
    const config = join(dir, "vllm.yaml");
    await writeFile(config, "gpu-memory-utilization: 0.7\n");
    const port = freePort();
    await startVllm(["--port", String(port), "--gpu-memory-utilization", "0.55", "--config", config]);
    expect(await cacheConfigInfo(port)).toContain('gpu_memory_utilization="0.55"');
    const before = freePort();
    await startVllm([`--config=${config}`, "--port", String(before), "--gpu-memory-utilization=0.6"]);
    expect(await cacheConfigInfo(before)).toContain('gpu_memory_utilization="0.6"');
  }, 40_000);

  it.each([
    ["missing", null, "no such file"],
    ["not YAML", "gpu-memory-utilization: [0.7\n", "not YAML"],
    ["not a mapping", "- gpu-memory-utilization\n- 0.7\n", "not a YAML mapping"],
    ["empty", "", "not a YAML mapping"],
  ])(
    "exits 1 naming a config file that is %s",
    async (_, text, why) => {
      const dir = await testdir();
      const config = join(dir, "vllm.yaml");
      if (text !== null) await writeFile(config, text);
      const vllm = await startVllm(["--port", String(freePort()), "--config", config]);
      expect(await vllm.exited).toBe(1);
      expect(vllm.err()).toMatch(
        new RegExp(`^ValueError: Unable to read the config file at ${config.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: ${why}`, "m"),
      );
      expect(vllm.out()).toBe("");
    },
    40_000,
  );
});

describe("createSimSite with configFile: true", () => {
  it("starts production with --config, serving the file's utilization, and names the file in KLR_VLLM_CONFIG", async () => {
    const dir = await testdir();
    const site = await createSimSite(dir, { gpus: 1, productionUtil: 0.62, configFile: true });
    onTestFinished(() => site.cleanup());
    expect(site.vllmConfigFile).toBe(join(dir, "vllm-config.yaml"));
    expect(site.env.KLR_VLLM_CONFIG).toBe(site.vllmConfigFile);
    const file = await readFile(join(dir, "vllm-config.yaml"), "utf8");
    expect(file).toMatch(/^# /);
    expect(file).toMatch(/^gpu-memory-utilization: 0\.62$/m);
    const start = site.env.KLR_PRODUCTION_START_COMMAND ?? "";
    expect(start).toContain(`--config ${join(dir, "vllm-config.yaml")}`);
    expect(start).not.toContain("--gpu-memory-utilization");
    await site.startProduction();
    expect(await cacheConfigInfo(site.productionPort)).toContain('gpu_memory_utilization="0.62"');
    expect(readHost(site.hostFile).processes.map((p) => p.used_memory_mib)).toEqual([Math.ceil(143148 * 0.62)]);
  }, 60_000);

  it("stays as before without the option", async () => {
    const site = await createSimSite(await testdir(), { gpus: 1, productionUtil: 0.62 });
    onTestFinished(() => site.cleanup());
    expect(site.vllmConfigFile).toBeNull();
    expect(site.env.KLR_VLLM_CONFIG).toBeUndefined();
    expect(site.env.KLR_PRODUCTION_START_COMMAND).toContain("--gpu-memory-utilization 0.62");
    expect(site.env.KLR_PRODUCTION_START_COMMAND).not.toContain("--config");
  });
});
