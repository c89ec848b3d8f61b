import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createFleetPool, listHosts, migrate, rolloutStatus, startRollout } from "@gpu-canary/fleet-store";
import { fingerprintDifferences, fingerprintSchema } from "@gpu-canary/spica-evaluator";
import { postgresForFile, testdir, until } from "@gpu-canary/testing";
import { applySiteOptions, createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { startDaemon } from "./test-fixtures/daemon-process.ts";

const postgres = postgresForFile();

/** A simulated host with production on a --config file at 0.7, and its gpu-canaryd in the fleet. */
async function hostWithDaemon(url: string, hostId: string, settings: Record<string, string> = {}) {
  const site = await createSimSite(await testdir(), applySiteOptions({ KLR_STATE_URL: url, KLR_HOST_ID: hostId, ...settings }));
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  const daemon = await startDaemon(site);
  const layout = layoutFor(requireConfig(loadConfig({ env: site.env, homeDir: site.home })).config);
  return { hostId, site, daemon, layout };
}

describe("gpu-canaryd in a fleet rollout", () => {
  it("each daemon publishes its fingerprint, applies its assignment in its window and reports it; a verification that fails pauses the rollout", async () => {
    const url = await postgres.database("daemon_rollout");
    const pool = createFleetPool(url);
    onTestFinished(() => pool.end());
    await migrate(pool);
    // gpu-b's production cannot meet its TTFT limit: its verification after the restart fails.
    const [a, b] = await Promise.all([hostWithDaemon(url, "gpu-a"), hostWithDaemon(url, "gpu-b", { KLR_CANARY_TTFT_P95_MS: "1" })]);
    const says = () => `gpu-a:\n${a.daemon.stderr().slice(-3000)}\ngpu-b:\n${b.daemon.stderr().slice(-3000)}`;
    const hosts = await until(
      async () => {
        const all = await listHosts(pool);
        return all.length === 2 && all.every((h) => h.info.fingerprint !== undefined) && all;
      },
      () => `both daemons to publish their fingerprint\n${says()}`,
      { timeoutMs: 45_000, pollMs: 100 },
    );
    const fingerprint = fingerprintSchema.parse(hosts[0]?.info.fingerprint);
    const promotion = {
      run_id: "r-proven",
      created_at: new Date().toISOString(),
      subsystem: "gpu_allocation",
      candidate: { vllm_memory_util: 0.8, whisper_model_size: fingerprint.whisper_size },
      path: "quiesced",
      whisper_verified: false,
      llm_latency_ms: 12,
      state: "applied",
      fingerprint,
    };
    const differs = (published: unknown) => {
      const host = fingerprintSchema.safeParse(published);
      return host.success ? fingerprintDifferences(fingerprint, host.data) : ["no fingerprint"];
    };
    const started = await startRollout(pool, { runId: "r-proven", fromHost: "gpu-z", promotion, differs, wave: 1 });
    expect(started.hosts.map((h) => [h.hostId, h.state])).toEqual([
      ["gpu-a", "assigned"],
      ["gpu-b", "pending"],
    ]);

    const settled = await until(
      async () => {
        const r = await rolloutStatus(pool, started.id);
        return r.state !== "running" && r;
      },
      () => `the rollout to stop running\n${says()}`,
      { timeoutMs: 50_000, pollMs: 200 },
    );
    expect(settled).toMatchObject({ state: "paused", stateReason: expect.stringContaining("gpu-b: its apply rolled back") });
    expect(settled.hosts.map((h) => [h.hostId, h.state])).toEqual([
      ["gpu-a", "applied"],
      ["gpu-b", "rolled_back"],
    ]);
    // gpu-a's production serves the promotion, recorded as applied; gpu-b's went back to what it had.
    const applied = (h: typeof a) => readFile(h.layout.appliedFile, "utf8").then((t) => JSON.parse(t) as object);
    expect(await applied(a)).toMatchObject({ vllm_memory_util: 0.8, promotion_run_id: "r-proven" });
    expect(await applied(b)).toMatchObject({ vllm_memory_util: 0.7 });
    // each daemon wrote the promotion into its own folder, naming the rollout, and its part into its audit trail
    const copied = JSON.parse(await readFile(join(b.layout.promotionsDir, "r-proven.json"), "utf8")) as object;
    expect(copied).toMatchObject({ state: "rolled_back", rollout: { id: started.id, from_host: "gpu-z" } });
    const epochs = a.layout.auditDir;
    const trail = (await Promise.all((await readdir(epochs)).map((f) => readFile(join(epochs, f), "utf8")))).join("");
    expect(trail).toMatch(/"event":"fleet_rollout_host".*"result":"applied"/);
  }, 120_000);
});
