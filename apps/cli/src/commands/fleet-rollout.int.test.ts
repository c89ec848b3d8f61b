import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createRolloutStep, rolloutFleetFor } from "@gpu-canary/daemon";
import * as store from "@gpu-canary/fleet-store";
import { postgresForFile, testdir } from "@gpu-canary/testing";
import { SpicaGPUAllocation, hostFingerprint, localStoresOf } from "@gpu-canary/spica-evaluator";
import { applySiteOptions, createSimSite } from "@gpu-canary/vllm-sim";
import { pino } from "pino";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

const postgres = postgresForFile();

/**
 * One simulated host of the fleet, with what its gpu-canaryd would hold: an evaluator on the fleet's
 * stores and slot, and the daemon's rollout step bound to its own pool.
 */
async function host(url: string, hostId: string, settings: Record<string, string> = {}) {
  // Latency limits loose (applySiteOptions): only the host rigged to fail its verification has a tight one.
  const site = await createSimSite(await testdir(), applySiteOptions({ KLR_STATE_URL: url, KLR_HOST_ID: hostId, ...settings }));
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
  const layout = layoutFor(config);
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const pool = store.createFleetPool(url);
  onTestFinished(() => pool.end());
  const local = localStoresOf(layout);
  const evaluator = new SpicaGPUAllocation({
    config,
    layout,
    audit,
    env: site.env.GPU_CANARY_SIM_HOST ? { GPU_CANARY_SIM_HOST: site.env.GPU_CANARY_SIM_HOST } : {},
    owner: "gpu-canaryd",
    stores: {
      budget: store.mirroredBudgetStore(store.pgBudgetStore(pool, hostId), local.budget),
      rateLimits: store.mirroredStore(store.pgRateLimitStore(pool, hostId), local.rateLimits),
    },
    fleet: store.createRunGate(store.createFleetSlots({ pool, hostId, maxConcurrent: 1 })),
  });
  const step = createRolloutStep({ evaluator, fleet: rolloutFleetFor(store, pool, hostId), logger: pino({ level: "silent" }), audit });
  /** One turn of the daemon's work loop for a rollout: its choice, the apply, the report. */
  const work = async () => {
    const asked = await step.choice();
    if (!asked || asked.kind !== "apply") return null;
    const outcome = await evaluator.apply(asked.promotion).catch(async (error: unknown) => {
      await step.done(asked, error);
      throw error;
    });
    await step.done(asked, outcome);
    return outcome;
  };
  const run = (argv: string[]) => cli(argv, site.env, new Date().toISOString());
  return { hostId, site, layout, evaluator, step, work, run };
}

describe("gpu-canary fleet rollout", () => {
  it("rolls a promotion proven on gpu-a out in waves of one and stops at gpu-b, whose apply fails verification; gpu-c stays pending, gpu-d (another GPU) is skipped", async () => {
    const url = await postgres.database("rollout");
    const pool = store.createFleetPool(url);
    onTestFinished(() => pool.end());
    await store.migrate(pool);
    // gpu-b's production cannot meet its TTFT limit: its verification after the restart fails.
    const [a, b, c] = await Promise.all([host(url, "gpu-a"), host(url, "gpu-b", { KLR_CANARY_TTFT_P95_MS: "1" }), host(url, "gpu-c")]);
    // Each daemon publishes its fingerprint at start; nothing is assigned yet.
    for (const h of [a, b, c]) expect(await h.step.choice()).toBeNull();
    const fingerprint = await hostFingerprint(a.evaluator.context);
    expect((await store.listHosts(pool)).map((h) => h.info.fingerprint)).toEqual([fingerprint, fingerprint, fingerprint]);
    await store.touchHost(pool, "gpu-d", { fingerprint: { ...fingerprint, gpu_name: "NVIDIA A10" } });

    // A promotion as gpu-a's passed canary wrote it.
    await mkdir(a.layout.promotionsDir, { recursive: true });
    const promotion = {
      run_id: "r-proven",
      created_at: new Date().toISOString(),
      subsystem: "gpu_allocation",
      candidate: { vllm_memory_util: 0.8, whisper_model_size: a.evaluator.context.config.whisperSize },
      path: "quiesced",
      whisper_verified: false,
      llm_latency_ms: 12,
      state: "proposed",
      fingerprint,
    };
    await writeFile(join(a.layout.promotionsDir, "r-proven.json"), JSON.stringify(promotion));

    const none = await c.run(["fleet", "rollout", "status", "--json"]);
    expect([none.code, none.json()]).toEqual([0, { rollout_id: null, state: null, hosts: [] }]);
    const unknown = await c.run(["fleet", "rollout", "r-proven", "--json"]);
    expect([unknown.code, unknown.json().error?.code]).toEqual([2, "PROMOTION_NOT_FOUND"]);
    const badSoak = await a.run(["fleet", "rollout", "r-proven", "--soak-hours", "a day", "--json"]);
    expect([badSoak.code, badSoak.json().error?.message]).toEqual([2, expect.stringContaining("--soak-hours")]);
    const started = await a.run(["fleet", "rollout", "r-proven", "--wave", "1", "--soak-hours", "24", "--json"]);
    expect(started.code, started.stdout + started.stderr).toBe(0);
    expect(started.json()).toMatchObject({
      run_id: "r-proven",
      from_host: "gpu-a",
      wave: 1,
      soak_seconds: 86_400,
      waits_until: null,
      state: "running",
      hosts: [
        { host_id: "gpu-a", state: "assigned" },
        { host_id: "gpu-b", state: "pending" },
        { host_id: "gpu-c", state: "pending" },
        { host_id: "gpu-d", state: "skipped", reason: expect.stringContaining("GPU") },
      ],
    });
    // gpu-b finds it in the fleet's promotions table, where gpu-a's command copied it as it ended; a second rollout of it is refused.
    const copied = await pool.query<{ host_id: string }>("SELECT host_id FROM promotions WHERE run_id = 'r-proven'");
    expect(copied.rows).toEqual([{ host_id: "gpu-a" }]);
    const again = await b.run(["fleet", "rollout", "r-proven", "--json"]);
    expect([again.code, again.json().error?.code]).toEqual([3, "ROLLOUT_RUNNING"]);

    // gpu-b is not assigned yet: its daemon does nothing. gpu-a's applies, and gpu-b is assigned next.
    expect(await b.work()).toBeNull();
    expect(await a.work()).toMatchObject({ status: "applied", to: 0.8 });
    const rolloutId = String(started.json().rollout_id);
    // gpu-b holds the next place but waits out gpu-a's soak: a day after gpu-a applied it
    expect(await b.work()).toBeNull();
    const soaking = await c.run(["fleet", "rollout", "status", rolloutId]);
    expect(soaking.stdout).toMatch(/1 host at a time, each 24h00m after the last applied it: running/);
    expect(soaking.stdout).toMatch(/The next hosts take their turn after \d{4}-\d\d-\d\dT/);
    // a day later (gpu-a's apply moved back a day)
    await pool.query("UPDATE rollout_hosts SET updated_at = updated_at - interval '24 hours 1 second' WHERE host_id = 'gpu-a'");
    // gpu-b's daemon applies it; the verification fails, production goes back to its previous settings.
    expect(await b.work()).toMatchObject({ status: "rolled_back", reason: expect.stringMatching(/verification failed/) });
    // at most one try a night for an assignment
    expect(await b.work()).toBeNull();
    // the promotion was copied to gpu-b's promotions folder, saying where it came from
    expect(JSON.parse(await readFile(join(b.layout.promotionsDir, "r-proven.json"), "utf8"))).toMatchObject({
      run_id: "r-proven",
      state: "rolled_back",
      rollout: { id: rolloutId, from_host: "gpu-a" },
    });

    // The rollout is paused: gpu-c is never assigned.
    expect(await c.work()).toBeNull();
    const status = await c.run(["fleet", "rollout", "status", "--json"]);
    expect(status.code).toBe(0);
    expect(status.json()).toMatchObject({
      rollout_id: rolloutId,
      state: "paused",
      state_reason: expect.stringContaining("gpu-b: its apply rolled back"),
      hosts: [
        { host_id: "gpu-a", state: "applied" },
        { host_id: "gpu-b", state: "rolled_back", reason: expect.stringMatching(/verification failed/) },
        { host_id: "gpu-c", state: "pending" },
        { host_id: "gpu-d", state: "skipped" },
      ],
    });
    const text = await c.run(["fleet", "rollout", "status", "r-proven"]);
    expect(text.stdout).toMatch(/paused/);
    expect(text.stdout).toMatch(/gpu-d\s+skipped: GPU/);
    expect((await c.run(["fleet", "rollout", "status", "ro-unknown", "--json"])).code).toBe(2);

    // gpu-b's own copy is rolled back: a rollout of it from there is refused.
    const fromB = await b.run(["fleet", "rollout", "r-proven", "--json"]);
    expect([fromB.code, fromB.json().error?.code]).toEqual([3, "PROMOTION_NOT_APPLICABLE"]);
    // An operator resumes it: gpu-b stays rolled back, gpu-c is assigned next.
    const resumed = await a.run(["fleet", "rollout", "resume", rolloutId, "--reason", "gpu-b's TTFT limit is its own", "--json"]);
    expect(resumed.code, resumed.stdout).toBe(0);
    expect(resumed.json()).toMatchObject({
      state: "running",
      hosts: [{}, { state: "rolled_back" }, { host_id: "gpu-c", state: "assigned" }, {}],
    });
    expect(await c.step.choice()).toMatchObject({ kind: "apply", promotion: "r-proven", by: "rollout" });
  }, 120_000);
});
