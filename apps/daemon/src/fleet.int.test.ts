import { spawn } from "node:child_process";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createFleetPool, fleetOverview, listHosts, loadMigrations, migrate, queryAudit } from "@gpu-canary/fleet-store";
import { postgresForFile, testdir, tsNodeArgs } from "@gpu-canary/testing";
import { freePort } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";

const postgres = postgresForFile();

const bin = join(import.meta.dirname, "bin.ts");

async function database(migrated: boolean) {
  const url = await postgres.database("daemon");
  const pool = createFleetPool(url);
  onTestFinished(() => pool.end());
  if (migrated) await migrate(pool);
  return { url, pool };
}

/** gpu-canaryd on a fresh KLR_HOME in predictive mode; resolves with its exit code once it stops. */
async function daemon(url: string, home?: string) {
  const port = freePort();
  const child = spawn(process.execPath, tsNodeArgs(bin), {
    env: {
      ...process.env,
      KLR_HOME: home ?? (await testdir()),
      KLR_DAEMON_LISTEN: `127.0.0.1:${port}`,
      KLR_CANARY_MODE: "predictive",
      KLR_STATE_URL: url,
      KLR_HOST_ID: "gpu-a",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onTestFinished(() => void child.kill("SIGKILL"));
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  return { child, exited, port, stderr: () => stderr };
}

describe("gpu-canaryd with KLR_STATE_URL", () => {
  it("refuses to start (exit 3) against a schema newer than it knows, and against none, naming the fix", async () => {
    const newer = await database(true);
    await newer.pool.query("INSERT INTO schema_version (version, name) VALUES ($1, 'from-the-future')", [loadMigrations().length + 1]);
    const d = await daemon(newer.url);
    expect(await d.exited).toBe(3);
    expect(d.stderr()).toContain('"code":"FLEET_SCHEMA_NEWER"');
    expect(d.stderr()).not.toContain(postgres.cluster.password);
    const none = await daemon((await database(false)).url);
    expect(await none.exited).toBe(3);
    expect(none.stderr()).toContain("gpu-canary fleet init");
  }, 60_000);

  it("starts against the current schema, says it is in the fleet with its fingerprint, and stops on SIGTERM with exit 0", async () => {
    const { url, pool } = await database(true);
    const d = await daemon(url);
    const deadline = Date.now() + 50_000;
    while (!d.stderr().includes("Server listening") && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect((await listHosts(pool)).map((h) => h.hostId)).toEqual(["gpu-a"]);
    // its fingerprint, which `fleet rollout` compares with a promotion's, is published as it starts
    const published = async () => (await listHosts(pool))[0]?.info.fingerprint;
    while ((await published()) === undefined && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await published()).toMatchObject({ whisper_size: expect.any(String), tuned_flags: expect.any(Object) });
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(d.stderr()).not.toContain(postgres.cluster.password);
  }, 60_000);

  it("copies this host's audit trail to the fleet database while it polls, and what was written last as it stops", async () => {
    const { url, pool } = await database(true);
    const home = await testdir();
    const epochs = join(home, "out", "orchestration", "epochs");
    await mkdir(epochs, { recursive: true });
    const file = join(epochs, "gpu_canary_20261128.jsonl");
    const line = (ts: string, event: string) => `${JSON.stringify({ ts, event, run_id: "r-1", host: "h", pid: 1 })}\n`;
    await writeFile(file, line("2026-11-28T03:00:00.000Z", "production_stopped"));
    const d = await daemon(url, home);
    const copied = () => queryAudit(pool, { hostId: "gpu-a", runId: "r-1" }).then((rows) => rows.map((r) => r.record.event));
    const deadline = Date.now() + 50_000;
    while ((await copied()).length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await copied()).toEqual(["production_stopped"]);
    await appendFile(file, line("2026-11-28T03:00:30.000Z", "production_restored"));
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(await copied()).toEqual(["production_stopped", "production_restored"]);
  }, 60_000);

  it("publishes this host's applied settings, last run and promotions, and serves GET /fleet as fleet status --json shows it; 503 naming the database while it is away", async () => {
    const { url, pool } = await database(true);
    const home = await testdir();
    await mkdir(join(home, "out", "promotions"), { recursive: true });
    const promotion = (runId: string, state: string) => ({
      run_id: runId,
      created_at: "2026-11-28T03:10:00.000Z",
      subsystem: "gpu_allocation",
      candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" },
      path: null,
      whisper_verified: true,
      llm_latency_ms: 100,
      state,
    });
    await writeFile(join(home, "out", "promotions", "r-1.json"), JSON.stringify(promotion("r-1", "applied")));
    await writeFile(join(home, "out", "promotions", "r-2.json"), JSON.stringify(promotion("r-2", "proposed")));
    await mkdir(join(home, ".kloros", "vllm"), { recursive: true });
    await writeFile(
      join(home, ".kloros", "vllm", "applied.json"),
      JSON.stringify({
        vllm_memory_util: 0.8,
        whisper_model_size: "small",
        promotion_run_id: "r-1",
        applied_at: "2026-11-28T03:20:00.000Z",
        file: "h.yaml",
        run_id: "apply-1",
        previous: null,
      }),
    );
    const epochs = join(home, "out", "orchestration", "epochs");
    await mkdir(epochs, { recursive: true });
    await writeFile(
      join(epochs, "gpu_canary_20261128.jsonl"),
      `${JSON.stringify({ ts: "2026-11-28T03:20:30.000Z", event: "run_finished", run_id: "apply-1", host: "h", pid: 1, status: "applied", mode: "apply" })}\n`,
    );
    const d = await daemon(url, home);
    type Doc = { hosts: { host_id: string; last_seen: string; pending_promotions: string[] }[]; pending_promotions: unknown[] };
    const get = async () => {
      const response = await fetch(`http://127.0.0.1:${d.port}/fleet`).catch(() => null);
      return response ? { status: response.status, body: (await response.json()) as Doc & { error?: Record<string, unknown> } } : null;
    };
    const deadline = Date.now() + 50_000;
    let seen = await get();
    while ((seen?.body.hosts?.[0]?.pending_promotions ?? []).length === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      seen = await get();
    }
    expect(seen?.status).toBe(200);
    const body = seen?.body as Doc;
    expect(body.hosts).toEqual([
      expect.objectContaining({
        host_id: "gpu-a",
        applied: { vllm_memory_util: 0.8, whisper_model_size: "small", promotion_run_id: "r-1", since: "2026-11-28T03:20:00.000Z" },
        last_run: { run_id: "apply-1", at: "2026-11-28T03:20:30.000Z", verdict: "applied", mode: "apply" },
        pending_promotions: ["r-2"],
      }),
    ]);
    // the very document fleet status --json builds (fleetOverview), but for the moment each was taken
    const night = (body as unknown as { budget: { date: string } }).budget.date;
    const same = await fleetOverview(pool, { hostId: "gpu-a", maxConcurrent: 1, night, maxSeconds: 60 });
    const lastSeenless = (doc: Doc) => ({ ...doc, hosts: doc.hosts.map((h) => ({ ...h, last_seen: "" })) });
    expect(lastSeenless(body)).toEqual(
      lastSeenless({ ...same, database: (body as unknown as { database: string }).database } as unknown as Doc),
    );

    await postgres.cluster.stop();
    try {
      const down = await get();
      expect(down?.status).toBe(503);
      expect(down?.body.error).toMatchObject({
        code: "FLEET_DB_UNREACHABLE",
        database: expect.stringMatching(/^127\.0\.0\.1:\d+\/daemon_/),
      });
      expect(JSON.stringify(down?.body)).not.toContain(postgres.cluster.password);
    } finally {
      await postgres.cluster.start();
    }
    expect((await get())?.status).toBe(200);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 60_000);
});
