import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

type Check = { name: string; ok: boolean; detail: string; fix: string | null };

async function simSite(options: Parameters<typeof createSimSite>[1] = {}) {
  const dir = await testdir();
  const site = await createSimSite(dir, options);
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  const run = (argv: string[], env: Record<string, string> = {}) => cli(argv, { ...site.env, ...env }, new Date().toISOString());
  return { site, dir, run };
}

describe("production's --config file", () => {
  it("doctor fails a production started without --config <KLR_VLLM_CONFIG>, or with a tuned flag beside it, naming each", async () => {
    const { dir, run } = await simSite();
    const path = join(dir, "vllm.yaml");
    await writeFile(path, "# production's settings\ngpu-memory-utilization: 0.7\n");
    const checks = (await run(["doctor", "--json"], { KLR_VLLM_CONFIG: path })).json().checks as Check[];
    const check = checks.find((c) => c.name === "production_config");
    // The simulated host's start command passes --gpu-memory-utilization and no --config.
    expect(check).toMatchObject({
      ok: false,
      detail: `${path} sets gpu-memory-utilization 0.7, but KLR_PRODUCTION_START_COMMAND: it passes no --config ${path}; it also passes --gpu-memory-utilization, which vLLM takes over the file's value`,
      fix: expect.stringContaining(`--config ${path}\` and no --gpu-memory-utilization on the command line`),
    });
    await writeFile(path, "gpu-memory-utilization: [0.7\n");
    const broken = ((await run(["doctor", "--json"], { KLR_VLLM_CONFIG: path })).json().checks as Check[]).find(
      (c) => c.name === "production_config",
    );
    expect(broken).toMatchObject({ ok: false, detail: expect.stringMatching(new RegExp(`^${path}: not YAML`)) });
    const unset = ((await run(["doctor", "--json"])).json().checks as Check[]).find((c) => c.name === "production_config");
    expect(unset).toMatchObject({ ok: true, detail: expect.stringContaining("KLR_VLLM_CONFIG is not set") });
  }, 60_000);

  it("a production started with --config <KLR_VLLM_CONFIG> passes doctor, and serves what its file says", async () => {
    const { site, run } = await simSite({ configFile: true, productionUtil: 0.62 });
    const path = site.vllmConfigFile ?? "";
    expect(site.env.KLR_VLLM_CONFIG).toBe(path);
    const checks = (await run(["doctor", "--json"])).json().checks as Check[];
    expect(checks.find((c) => c.name === "production_config")).toMatchObject({
      ok: true,
      detail: `${path} sets gpu-memory-utilization 0.62; KLR_PRODUCTION_START_COMMAND passes --config ${path} and no tuned flag`,
    });
    expect((await run(["production", "--json"])).json()).toMatchObject({
      serving: { gpu_memory_utilization: 0.62 },
      config_file: { path, gpu_memory_utilization: 0.62 },
    });
  }, 60_000);

  it("`production` shows what production serves, what the file says and what the newest promotion would change", async () => {
    const { dir, run } = await simSite({ productionUtil: 0.7 });
    const path = join(dir, "vllm.yaml");
    await writeFile(path, "gpu_memory_utilization: 0.7\n");
    const before = await run(["production", "--json"], { KLR_VLLM_CONFIG: path });
    expect(before.code).toBe(0);
    expect(before.json()).toMatchObject({
      serving: { gpu_memory_utilization: 0.7, whisper_model_size: "small" },
      config_file: { path, gpu_memory_utilization: 0.7 },
      newest_promotion: null,
      problems: [],
    });
    const passed = await run(["evaluate", "--candidate", '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}', "--json"]);
    expect(passed.code).toBe(0);
    const after = await run(["production"], { KLR_VLLM_CONFIG: path });
    expect(after.stdout).toMatch(
      /^\s+serving now\s+config file\s+applied \(none\)\s+promotion r-\S+ \(proposed\)\ngpu_memory_utilization\s+0\.7\s+0\.7\s+—\s+0\.75\n/,
    );
    expect(after.stdout).toContain("The newest promotion would change: gpu_memory_utilization 0.7 → 0.75.");
    // A file production does not follow is said, with where to look.
    await writeFile(path, "gpu_memory_utilization: 0.6\n");
    const ignored = await run(["production", "--json"], { KLR_VLLM_CONFIG: path });
    expect(ignored.json().problems).toEqual([
      `production serves gpu_memory_utilization 0.7 but ${path} says 0.6: it has not restarted since the file changed, or its command line overrides the file (see \`gpu-canary doctor\`'s production_config)`,
    ]);
    const promotions = await run(["promotions"]);
    expect(promotions.stdout).toMatch(
      / load 2 × 512\+128 tokens \(concurrency 2, prompt tokens 512, output tokens 128 \(default: production showed none\)\), 0 preemptions$/m,
    );
    // An unreadable file is named, the rest still shown.
    await writeFile(path, "- a list\n");
    const broken = await run(["production", "--json"], { KLR_VLLM_CONFIG: path });
    expect(broken.code).toBe(0);
    expect(broken.json()).toMatchObject({ config_file: null, problems: [expect.stringContaining(`${path}: is YAML but not a mapping`)] });
    expect(broken.stderr).toContain(`warning: ${path}: is YAML but not a mapping`);
  }, 90_000);
});
