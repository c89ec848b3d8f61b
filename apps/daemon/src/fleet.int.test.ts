import { spawn } from "node:child_process";
import { appendFile, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createFleetPool, listHosts, loadMigrations, migrate, queryAudit } from "@gpu-canary/fleet-store";
import { type PostgresCluster, startPostgres, testdir, tsNodeArgs } from "@gpu-canary/testing";
import { freePort } from "@gpu-canary/vllm-sim";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";

let cluster: PostgresCluster;
beforeAll(async () => {
  cluster = await startPostgres();
});
afterAll(async () => {
  await cluster?.close();
});

const bin = join(import.meta.dirname, "bin.ts");
let counter = 0;

async function database(migrated: boolean) {
  counter += 1;
  const url = await cluster.createDatabase(`daemon_${process.pid}_${counter}`);
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
  return { child, exited, stderr: () => stderr };
}

describe("gpu-canaryd with KLR_STATE_URL", () => {
  it("refuses to start (exit 3) against a schema newer than it knows, and against none, naming the fix", async () => {
    const newer = await database(true);
    await newer.pool.query("INSERT INTO schema_version (version, name) VALUES ($1, 'from-the-future')", [loadMigrations().length + 1]);
    const d = await daemon(newer.url);
    expect(await d.exited).toBe(3);
    expect(d.stderr()).toContain('"code":"FLEET_SCHEMA_NEWER"');
    expect(d.stderr()).not.toContain(cluster.password);
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
    expect(d.stderr()).not.toContain(cluster.password);
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
});
