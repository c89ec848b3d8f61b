import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

describe("gpu-canary config", () => {
  it("shows each setting with its source in text and JSON", async () => {
    const home = await testdir();
    await writeFile(join(home, ".kloros_env"), "KLR_CANARY_MODE=predictive\nKLR_CANARY_MODE=canary\nKLR_VLLM_API_KEY=sk-123\n");
    const text = await cli(["config"], { KLR_HOME: home, KLR_CANARY_PORT: "9111" });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`KLR_CANARY_MODE`);
    expect(text.stdout).toMatch(new RegExp(`KLR_CANARY_MODE\\s+canary\\s+\\[${home}/.kloros_env:2\\]`));
    expect(text.stdout).toMatch(/KLR_CANARY_PORT\s+9111\s+\[environment\]/);
    expect(text.stdout).toMatch(/KLR_CANARY_TIMEOUT\s+30\s+\[default\]/);
    expect(text.stdout).not.toContain("sk-123");
    const json = (await cli(["config", "--json"], { KLR_HOME: home })).json() as {
      settings: Record<string, unknown>;
      paths: Record<string, string>;
    };
    expect(json.settings.KLR_CANARY_MODE).toEqual({
      value: "canary",
      text: "canary",
      source: "env-file",
      file: join(home, ".kloros_env"),
      line: 2,
    });
    expect(json.settings.KLR_VLLM_API_KEY).toMatchObject({ value: "********" });
    expect(json.paths.gpu_lock).toBe(join(home, ".kloros/locks/gpu_maintenance.lock"));
  });

  it("shows the fleet database's URL without its password", async () => {
    const home = await testdir();
    await writeFile(join(home, ".kloros_env"), "KLR_STATE_URL=postgres://gpu_canary:pg-s3cret@db.example:5432/fleet\n");
    const text = await cli(["config"], { KLR_HOME: home });
    expect(text.stdout).toMatch(/KLR_STATE_URL\s+postgres:\/\/gpu_canary:\*{8}@db\.example:5432\/fleet\s/);
    const json = await cli(["config", "--json"], { KLR_HOME: home });
    expect((json.json() as { settings: Record<string, unknown> }).settings.KLR_STATE_URL).toMatchObject({
      value: "postgres://gpu_canary:********@db.example:5432/fleet",
    });
    expect(text.stdout + json.stdout).not.toContain("pg-s3cret");
  });

  it("warns about a near-miss key on stderr", async () => {
    const home = await testdir();
    await writeFile(join(home, ".kloros_env"), "KLR_CANARY_MODDE=canary\n");
    const result = await cli(["config", "--json"], { KLR_HOME: home });
    expect(result.stderr).toContain("did you mean KLR_CANARY_MODE?");
    expect(result.json().warnings).toHaveLength(1);
  });

  it.each([
    ["KLR_GPU_MAINTENANCE_MAX_DOWNTIME", "-1"],
    ["KLR_GPU_MAINTENANCE_WINDOW", "3am-7am"],
    ["KLR_GPU_MAINTENANCE_TZ", "Eastern"],
    ["KLR_CANARY_MODE", "live"],
    ["KLR_CANARY_PORT", "0"],
    ["KLR_CANARY_TIMEOUT", "abc"],
    ["KLR_RESTORE_SLA", "-2"],
    ["KLR_ALLOW_SPARE_GPU", "sure"],
    ["KLR_SPARE_GPU_ID", "x"],
    ["KLR_PRODUCTION_GPU_ID", "1.5"],
    ["KLR_RATE_LIMIT_MAX_RUNS", "0"],
    ["KLR_RATE_LIMIT_WINDOW_HOURS", "-24"],
    ["KLR_RATE_LIMIT_COOLDOWN_HOURS", "soon"],
    ["KLR_VLLM_MEMORY_UTIL_MIN", "60"],
    ["KLR_VLLM_MEMORY_UTIL_MAX", "0"],
    ["KLR_QUIESCE", "hibernate"],
    ["KLR_MAX_MODEL_LEN", "-1"],
    ["KLR_MAX_NUM_SEQS", "many"],
    ["KLR_MAX_NUM_BATCHED_TOKENS", "0"],
    ["KLR_KV_CACHE_DTYPE", "int4"],
    ["KLR_VLLM_VERSION", "new"],
    ["KLR_WHISPER_SIZE", "xl"],
    ["KLR_CANARY_SAMPLES", "0"],
    ["KLR_SUBSYSTEMS", ","],
    ["KLR_CANARY_TTFT_P95_MS", "0"],
    ["KLR_CANARY_MAX_SLOWDOWN", "0.9"],
    ["KLR_LOCK_TTL", "0"],
    ["KLR_VLLM_URL", "localhost"],
    ["KLR_MODEL_PATH", "./model"],
    ["KLR_SERVICE_MANAGER", "k8s"],
    ["KLR_VLLM_LOG", "stdout"],
    ["KLR_DAEMON_LISTEN", ":9012"],
    ["KLR_DAEMON_TOKEN_FILE", "tok"],
    ["KLR_NOTIFY_URL", "not a url"],
  ])("exits 2 naming %s when it is %j, in every command", async (name, value) => {
    const home = await testdir();
    for (const argv of [["config"], ["window"], ["budget"]]) {
      const result = await cli(argv, { KLR_HOME: home, [name]: value });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(`${name}: expected`);
      expect(result.stdout).toBe("");
    }
    const json = await cli(["config", "--json"], { KLR_HOME: home, [name]: value });
    expect(json.json().error).toMatchObject({ code: "SETTINGS_INVALID", message: expect.stringContaining(name) });
  });
});
