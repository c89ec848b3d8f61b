import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createFleetPool, createFleetSlots, publishHost } from "@gpu-canary/fleet-store";
import { loadConfig, requireConfig } from "@gpu-canary/config";
import { nightOf } from "@gpu-canary/policy";
import { postgresForFile, testdir, tsNodeArgs } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

const postgres = postgresForFile();

/** A host's KLR_HOME on a new, empty fleet database, and a pool on it for the test's own looks. */
async function host(hostId = "gpu-a") {
  const url = await postgres.database("cli_fleet");
  const pool = createFleetPool(url);
  onTestFinished(() => pool.end());
  const env = { KLR_HOME: await testdir(), KLR_STATE_URL: url, KLR_HOST_ID: hostId };
  return { url, pool, env, run: (argv: string[], over: Record<string, string> = {}) => cli(argv, { ...env, ...over }) };
}

const promotion = (runId: string, state: string, createdAt: string) => ({
  run_id: runId,
  created_at: createdAt,
  subsystem: "gpu_allocation",
  candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" },
  path: null,
  whisper_verified: true,
  llm_latency_ms: 100,
  state,
});

const intent = (id: string, createdAt: string) => ({
  kind: "oom_kv_cache",
  subsystem: "gpu_allocation",
  evidence: "ValueError: No available memory for the cache blocks.",
  id,
  created_at: createdAt,
});

describe("gpu-canary fleet", () => {
  it("exits 2 naming KLR_STATE_URL when it is unset", async () => {
    const home = await testdir();
    for (const argv of [
      ["fleet", "init"],
      ["fleet", "status"],
      ["fleet", "release", "gpu-b", "--force"],
    ]) {
      const result = await cli([...argv, "--json"], { KLR_HOME: home });
      expect(result.code).toBe(2);
      expect(result.json().error).toMatchObject({ code: "FLEET_NOT_CONFIGURED", message: expect.stringContaining("KLR_STATE_URL") });
    }
  });

  it("fleet init migrates from 0 to 4, then has nothing to do; status before it names fleet init (exit 3)", async () => {
    const { run } = await host();
    const before = await run(["fleet", "status"]);
    expect(before.code).toBe(3);
    expect(before.stderr).toContain("gpu-canary fleet init");
    const first = await run(["fleet", "init", "--json"]);
    expect(first.code).toBe(0);
    expect(first.json()).toMatchObject({ from: 0, to: 4, host_id: "gpu-a" });
    const again = await run(["fleet", "init"]);
    expect(again).toMatchObject({ code: 0 });
    expect(again.stdout).toMatch(/is at schema version 4: nothing to do/);
    expect(again.stdout).not.toContain(postgres.cluster.password);
  });

  it("fleet status shows every host with its applied settings, last run, pending promotions and open intents, a stale holder with its release command, and this host's budget", async () => {
    const { run, pool, env } = await host();
    expect((await run(["fleet", "init"])).code).toBe(0);
    const b = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    expect(await b.acquire("r-b-1")).toMatchObject({ ok: true });
    const { config } = requireConfig(loadConfig({ env, homeDir: env.KLR_HOME }));
    await pool.query("INSERT INTO documents (host_id, key, doc) VALUES ('gpu-b', $1, $2)", [
      `budget/${nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date("2026-11-28T13:40:00Z"))}`,
      JSON.stringify({ seconds_used: 7.5, charges: [] }),
    ]);
    // gpu-b stopped renewing five minutes ago (it died)
    await pool.query("UPDATE slots SET renewed_at = now() - interval '5 minutes'");
    // gpu-b published what it had before it died: nothing applied, one promotion proven there
    await publishHost(pool, {
      hostId: "gpu-b",
      applied: null,
      promotions: [promotion("r-b-0", "proposed", "2026-11-27T03:00:00.000Z")],
      intents: [{ ...intent("i-b-1", "2026-11-27T02:00:00.000Z"), state: "processed" }],
    });
    // this host (gpu-a): a promotion applied, another pending, its last run in its own audit trail
    const home = env.KLR_HOME;
    await mkdir(join(home, "out", "promotions"), { recursive: true });
    await writeFile(
      join(home, "out", "promotions", "r-a-1.json"),
      JSON.stringify(promotion("r-a-1", "applied", "2026-11-28T02:00:00.000Z")),
    );
    await writeFile(
      join(home, "out", "promotions", "r-a-2.json"),
      JSON.stringify(promotion("r-a-2", "proposed", "2026-11-28T03:00:00.000Z")),
    );
    await writeFile(join(home, "out", "promotions", "r-a-3.json"), "{ a promotion cut short");
    // an out-of-memory event queued on this host, not worked yet
    await mkdir(join(home, "out", "orchestration", "intents"), { recursive: true });
    await writeFile(
      join(home, "out", "orchestration", "intents", "i-a-1.json"),
      JSON.stringify(intent("i-a-1", "2026-11-28T03:05:00.000Z")),
    );
    await mkdir(join(home, ".kloros", "vllm"), { recursive: true });
    await writeFile(
      join(home, ".kloros", "vllm", "applied.json"),
      JSON.stringify({
        vllm_memory_util: 0.82,
        whisper_model_size: "small",
        promotion_run_id: "r-a-1",
        applied_at: "2026-11-28T02:30:00.000Z",
        file: "h.yaml",
        run_id: "apply-1",
        previous: null,
      }),
    );
    await mkdir(join(home, "out", "orchestration", "epochs"), { recursive: true });
    await writeFile(
      join(home, "out", "orchestration", "epochs", "gpu_canary_20261128.jsonl"),
      `${JSON.stringify({ ts: "2026-11-28T03:00:00.000Z", event: "run_finished", run_id: "r-a-2", host: "h", pid: 1, status: "passed", mode: "canary" })}\n`,
    );
    const json = await run(["fleet", "status", "--json"]);
    expect(json.code).toBe(0);
    expect(json.stderr).toContain("r-a-3.json is not a promotion");
    const doc = json.json() as {
      hosts: Record<string, unknown>[];
      slots: unknown[];
      budget: unknown;
      max_concurrent: number;
      pending_promotions: unknown[];
      open_intents: unknown[];
    };
    expect(doc.hosts.map((h) => h.host_id)).toEqual(["gpu-a", "gpu-b"]);
    expect(doc.hosts[0]).toMatchObject({
      in_maintenance: false,
      applied: { vllm_memory_util: 0.82, whisper_model_size: "small", promotion_run_id: "r-a-1", since: "2026-11-28T02:30:00.000Z" },
      last_run: { run_id: "r-a-2", at: "2026-11-28T03:00:00.000Z", verdict: "passed", mode: "canary" },
      pending_promotions: ["r-a-2"],
      open_intents: ["i-a-1"],
    });
    expect(doc.hosts[1]).toMatchObject({
      in_maintenance: true,
      run_id: "r-b-1",
      renewing: false,
      budget_seconds_used: 7.5,
      applied: null,
      last_run: null,
      pending_promotions: ["r-b-0"],
      open_intents: [],
    });
    expect(doc.pending_promotions).toEqual([
      expect.objectContaining({ run_id: "r-b-0", host_id: "gpu-b", vllm_memory_util: 0.8 }),
      expect.objectContaining({ run_id: "r-a-2", host_id: "gpu-a" }),
    ]);
    expect(doc.open_intents).toEqual([
      { id: "i-a-1", host_id: "gpu-a", kind: "oom_kv_cache", state: "pending", created_at: "2026-11-28T03:05:00Z" },
    ]);
    expect(doc.max_concurrent).toBe(1);
    expect(doc.slots).toEqual([
      expect.objectContaining({
        host_id: "gpu-b",
        run_id: "r-b-1",
        renewing: false,
        release_command: "gpu-canary fleet release gpu-b --force",
      }),
    ]);
    expect(doc.budget).toMatchObject({ seconds_used: 0, max_seconds: 60 });
    const text = await run(["fleet", "status"]);
    expect(text.stdout).toContain("1 of 1 maintenance slot held");
    expect(text.stdout).toMatch(
      /slot: gpu-b, run r-b-1, since .*STALE: not renewed for 5m\d\ds; if the host is dead: gpu-canary fleet release gpu-b --force/,
    );
    expect(text.stdout).toContain("gpu-b: last seen");
    expect(text.stdout).toMatch(
      /gpu-a: .*applied: util 0\.82, whisper small \(promotion r-a-1\) since 2026-11-28T02:30:00.000Z; last run r-a-2 canary passed at 2026-11-28T03:00:00.000Z; pending: r-a-2; 1 open intent$/m,
    );
    expect(text.stdout).toMatch(/gpu-b: .*nothing applied by gpu-canary; no run yet; pending: r-b-0; 0 open intents$/m);
    expect(text.stdout).toContain("Pending promotions (2):");
  });

  it("fleet release refuses without --force (exit 2), frees the host's slot with it, and audits who and why", async () => {
    const { run, pool } = await host();
    expect((await run(["fleet", "init"])).code).toBe(0);
    const b = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    expect(await b.acquire("r-b-1")).toMatchObject({ ok: true });
    const refused = await run(["fleet", "release", "gpu-b"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("--force");
    expect(await b.list()).toHaveLength(1);
    const released = await run(["fleet", "release", "gpu-b", "--force", "--reason", "gpu-b is powered off", "--json"]);
    expect(released.code).toBe(0);
    expect(released.json()).toMatchObject({ host_id: "gpu-b", released: [{ run_id: "r-b-1" }], by: "gpu-a" });
    expect(await b.list()).toEqual([]);
    const audit = await run(["audit", "query", "--event", "fleet_slot_released", "--json"]);
    expect(JSON.parse(audit.stdout.trim().split("\n")[0] ?? "{}")).toMatchObject({
      event: "fleet_slot_released",
      forced: true,
      holder_host: "gpu-b",
      runs: ["r-b-1"],
      reason: "gpu-b is powered off",
    });
    expect((await run(["fleet", "release", "gpu-b", "--force"])).stdout).toContain("holds no fleet maintenance slot");
  });

  it("fleet status exits 3 naming the database, never its password, when the server does not answer", async () => {
    const { url } = await host();
    const dead = url.replace(`:${postgres.cluster.port}/`, ":1/");
    const result = await cli(["fleet", "status", "--json"], { KLR_HOME: await testdir(), KLR_STATE_URL: dead });
    expect(result.code).toBe(3);
    expect(result.json().error).toMatchObject({ code: "FLEET_DB_UNREACHABLE" });
    expect(result.stdout).not.toContain(postgres.cluster.password);
  });

  it("never loads pg without KLR_STATE_URL, nor for a predictive run with it: the fleet costs a host's cold start nothing", async () => {
    const dir = await testdir();
    // Counts pg's modules in the CommonJS cache as the process exits (pg is CommonJS).
    const watch = join(dir, "pg-watch.cjs");
    await writeFile(
      watch,
      `process.on("exit", () => process.stderr.write("pg modules: " + Object.keys(require("module")._cache).filter((k) => k.includes("/node_modules/pg/")).length + "\\n"));\n`,
    );
    const loadedPg = (args: string[], env: Record<string, string>) => {
      const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
      const r = spawnSync(process.execPath, ["--require", watch, ...tsNodeArgs(join(import.meta.dirname, "..", "bin.ts"), args)], {
        env: { ...clean, KLR_HOME: dir, ...env },
        encoding: "utf8",
      });
      return Number(/pg modules: (\d+)/.exec(r.stderr)?.[1] ?? "-1");
    };
    const away = { KLR_STATE_URL: "postgres://u:secret@127.0.0.1:1/fleet" };
    const predictive = ["evaluate", "--mode", "predictive", "--candidate", '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}'];
    expect(loadedPg(["budget"], {})).toBe(0);
    expect(loadedPg(["recover"], {})).toBe(0);
    expect(loadedPg(predictive, {})).toBe(0);
    expect(loadedPg(predictive, away)).toBe(0);
    expect(loadedPg(["budget"], away)).toBe(0);
    // the control: a fleet command does load it
    expect(loadedPg(["fleet", "status"], away)).toBeGreaterThan(0);
  }, 120_000);

  it("budget reset in a fleet resets the database's copy, which runs charge, and the local file alike", async () => {
    const { run, pool } = await host();
    expect((await run(["fleet", "init"])).code).toBe(0);
    await pool.query("INSERT INTO documents (host_id, key, doc) VALUES ('gpu-a', 'budget/20261128', $1)", [
      JSON.stringify({ seconds_used: 42, charges: [] }),
    ]);
    const reset = await run(["budget", "reset", "--yes", "--date", "20261128", "--json"]);
    expect(reset.code).toBe(0);
    expect(reset.json()).toMatchObject({ reset: true, previous_seconds_used: 42, seconds_used: 0 });
    const row = await pool.query<{ doc: { seconds_used: number } }>(
      "SELECT doc FROM documents WHERE host_id = 'gpu-a' AND key = 'budget/20261128'",
    );
    expect(row.rows[0]?.doc.seconds_used).toBe(0);
    expect((await run(["budget", "--date", "20261128", "--json"])).json()).toMatchObject({ seconds_used: 0 });
  });
});
