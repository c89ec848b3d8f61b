import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createFleetPool, createFleetSlots, migrate } from "@gpu-canary/fleet-store";
import { nightOf } from "@gpu-canary/policy";
import { postgresForFile, testdir, tsNodeArgs, until } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

// This file stops and starts its own server: its tests never share it with another file's.
const postgres = postgresForFile();

const bin = join(import.meta.dirname, "..", "bin.ts");
const candidate = JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "small" });

describe("a fleet run whose database goes away", () => {
  it("restores production and ends, keeps its slot and its charge in the journal; new runs refuse; recover charges and frees the slot once it is back", async () => {
    const url = await postgres.database("away");
    const pool = createFleetPool(url);
    onTestFinished(() => pool.end());
    await migrate(pool);
    // A longer load, so that the database can be stopped while the canary is under test.
    const site = await createSimSite(await testdir(), {
      settings: { KLR_STATE_URL: url, KLR_HOST_ID: "gpu-a", KLR_CANARY_LOAD_SECONDS: "6" },
    });
    onTestFinished(() => site.cleanup());
    await site.startProduction();
    const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
    const layout = layoutFor(config);
    const night = nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date());
    const serves = () =>
      fetch(`${site.env.KLR_VLLM_URL}/health`).then(
        (r) => r.ok,
        () => false,
      );

    const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
    const child = spawn(process.execPath, tsNodeArgs(bin, ["evaluate", "--candidate", candidate, "--json"]), {
      env: { ...clean, ...site.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    onTestFinished(() => void child.kill("SIGKILL"));
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));

    await until(
      () => / evaluate: testing: load: /.test(stderr),
      () => `the run under load; its stderr: ${stderr}`,
      { timeoutMs: 60_000 },
    );
    expect(await serves()).toBe(false); // production is down for the canary
    await postgres.cluster.stop();
    const code = await exited;

    // The run finished its undo: production serves again; the charge could not reach the database.
    expect(await serves()).toBe(true);
    expect(code).not.toBe(0);
    const result = JSON.parse(stdout) as { status: string; validation_reason: string };
    expect(result.status).toBe("error");
    expect(result.validation_reason).toMatch(/cannot be reached/);
    expect(stdout + stderr).not.toContain(postgres.cluster.password);
    // recorded locally: the audit trail says production came back, and the lock keeps the journal for recover
    const audit = await cli(["audit", "query", "--json"], site.env, new Date().toISOString());
    expect(audit.stdout).toContain('"production_restored"');
    const lock = (await cli(["lock", "status", "--json"], site.env, new Date().toISOString())).json();
    expect(lock).toMatchObject({ awaits_recovery: true });
    expect(existsSync(layout.budgetFile(night)) ? JSON.parse(readFileSync(layout.budgetFile(night), "utf8")).seconds_used : 0).toBe(0);

    // New quiesced runs refuse while the database is away (exit 3, naming it).
    const refused = await cli(["evaluate", "--candidate", candidate, "--json"], site.env, new Date().toISOString());
    expect(refused.code).toBe(3);
    expect(refused.json().error).toMatchObject({ code: "FLEET_DB_UNREACHABLE" });

    // Back: the crashed run's slot is still held (never freed by time) …
    await postgres.cluster.start();
    const slots = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    const runId = (lock.holder as { run_id: string }).run_id;
    expect((await slots.list()).map((s) => [s.hostId, s.runId])).toEqual([["gpu-a", runId]]);
    expect(await slots.acquire("r-b-1")).toMatchObject({ ok: false, holders: [{ hostId: "gpu-a" }] });
    // … until gpu-a's recover charges the outage (nothing lost) and frees it.
    const recovered = await cli(["recover", "--json"], site.env, new Date().toISOString());
    expect(recovered.code).toBe(0);
    expect(recovered.json()).toMatchObject({ action: "recovered", run_id: runId });
    const charged = (recovered.json() as { charged_seconds: number }).charged_seconds;
    expect(charged).toBeGreaterThan(0);
    const row = await pool.query<{ doc: { seconds_used: number } }>("SELECT doc FROM documents WHERE host_id = $1 AND key = $2", [
      "gpu-a",
      `budget/${night}`,
    ]);
    expect(row.rows[0]?.doc.seconds_used).toBe(charged);
    expect(JSON.parse(readFileSync(layout.budgetFile(night), "utf8")).seconds_used).toBe(charged);
    expect(await slots.list()).toEqual([]);
    expect(await slots.acquire("r-b-1")).toMatchObject({ ok: true });
  }, 180_000);
});
