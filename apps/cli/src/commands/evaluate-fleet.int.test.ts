import { readFileSync } from "node:fs";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createFleetPool, createFleetSlots, migrate } from "@gpu-canary/fleet-store";
import { nightOf } from "@gpu-canary/policy";
import { postgresForFile, testdir, until } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

const postgres = postgresForFile();

const candidate = JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "small" });

/** A simulated host `gpu-a` serving production, on a new migrated fleet database; `slots(host)` acts as another host. */
async function fleetSite(settings: Record<string, string> = {}) {
  const url = await postgres.database("eval_fleet");
  const pool = createFleetPool(url);
  onTestFinished(() => pool.end());
  await migrate(pool);
  const site = await createSimSite(await testdir(), { settings: { KLR_STATE_URL: url, KLR_HOST_ID: "gpu-a", ...settings } });
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
  const layout = layoutFor(config);
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const night = nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date());
  return {
    url,
    pool,
    site,
    night,
    budgetFile: layout.budgetFile(night),
    events: () => audit.query(),
    slots: (hostId: string) => createFleetSlots({ pool, hostId, maxConcurrent: 1 }),
    run: (argv: string[], env: Record<string, string> = {}) => cli(argv, { ...site.env, ...env }, new Date().toISOString()),
  };
}

describe("gpu-canary evaluate in a fleet (KLR_STATE_URL)", () => {
  it("refuses a quiesced canary with exit 3 naming the host that holds the only slot, and runs it once that slot is released", async () => {
    const f = await fleetSite();
    expect(await f.slots("gpu-b").acquire("r-b-1")).toMatchObject({ ok: true });
    const refused = await f.run(["evaluate", "--candidate", candidate, "--json"]);
    expect(refused.code).toBe(3);
    expect(refused.json()).toMatchObject({ status: "refused", gate: "fleet_slot" });
    expect(String(refused.json().validation_reason)).toMatch(/gpu-b \(run r-b-1, since /);
    // refused before anything was touched: production never stopped, no rate-limit slot used
    const before = await f.events();
    expect(before.map((e) => e.event)).not.toContain("production_stopped");
    expect(before.filter((e) => e.event === "gate_refused")).toEqual([expect.objectContaining({ gate: "fleet_slot" })]);

    expect((await f.run(["fleet", "release", "gpu-b", "--force", "--reason", "test"])).code).toBe(0);
    const served = await f.run(["evaluate", "--candidate", candidate, "--json"]);
    expect(served.code).toBe(0);
    expect(served.json()).toMatchObject({ status: "passed", mode: "canary" });
    // the slot was freed at the run's end; the budget was charged in the database and its local copy alike
    expect(await f.slots("gpu-b").list()).toEqual([]);
    const local = JSON.parse(readFileSync(f.budgetFile, "utf8")) as { seconds_used: number };
    expect(local.seconds_used).toBeGreaterThan(0);
    const row = await f.pool.query<{ doc: { seconds_used: number } }>("SELECT doc FROM documents WHERE host_id = $1 AND key = $2", [
      "gpu-a",
      `budget/${f.night}`,
    ]);
    expect(row.rows[0]?.doc.seconds_used).toBe(local.seconds_used);
  }, 120_000);

  it("waits for the slot with --wait and runs when the holder's run ends", async () => {
    const f = await fleetSite();
    const b = f.slots("gpu-b");
    expect(await b.acquire("r-b-1")).toMatchObject({ ok: true });
    const waiting = f.run(["evaluate", "--candidate", candidate, "--wait", "60", "--json"]);
    setTimeout(() => void b.release({ runId: "r-b-1" }), 1500);
    const served = await waiting;
    expect(served.code).toBe(0);
    expect(served.json()).toMatchObject({ status: "passed" });
  }, 120_000);

  it("refuses a quiesced canary (exit 3) when the database is away, and still answers a predictive run", async () => {
    const f = await fleetSite();
    const away = { KLR_STATE_URL: f.url.replace(`:${postgres.cluster.port}/`, ":1/") };
    const refused = await f.run(["evaluate", "--candidate", candidate, "--json"], away);
    expect(refused.code).toBe(3);
    expect(refused.json().error).toMatchObject({ code: "FLEET_DB_UNREACHABLE" });
    expect(refused.stdout).not.toContain(postgres.cluster.password);
    const predictive = await f.run(["evaluate", "--candidate", candidate, "--mode", "predictive"], away);
    expect(predictive.code).toBe(0);
  }, 120_000);

  it("keeps a crashed run's slot until this host's recover releases it, audited", async () => {
    const f = await fleetSite();
    // a run of gpu-a that died holding its slot (the database was away at its end, or it was killed)
    expect(await f.slots("gpu-a").acquire("r-a-crashed")).toMatchObject({ ok: true });
    const refused = await f.run(["evaluate", "--candidate", candidate, "--json"]);
    expect(refused.code).toBe(3);
    expect(String(refused.json().validation_reason)).toContain("gpu-a (run r-a-crashed");
    const recovered = await f.run(["recover", "--json"]);
    expect(recovered.code).toBe(0);
    expect(recovered.json()).toMatchObject({
      detail: expect.stringContaining("released this host's fleet maintenance slot (run r-a-crashed)"),
    });
    expect(await f.slots("gpu-a").list()).toEqual([]);
    expect((await f.events()).filter((e) => e.event === "fleet_slot_released")).toEqual([
      expect.objectContaining({ runs: ["r-a-crashed"], forced: false }),
    ]);
    expect((await f.run(["evaluate", "--candidate", candidate])).code).toBe(0);
  }, 120_000);

  it("a slot released by force mid-run stops the run at the holder's next heartbeat: production restored and charged, no verdict, no promotion", async () => {
    // A load longer than the 5 s heartbeat, so that the run learns of it while under test.
    const f = await fleetSite({ KLR_CANARY_LOAD_SECONDS: "10" });
    const running = f.run(["evaluate", "--candidate", candidate, "--json"]);
    await until(async () => (await f.events()).some((e) => e.event === "canary_started"), "the canary started", { timeoutMs: 60_000 });
    const freed = await f.slots("gpu-b").releaseHost("gpu-a", { force: true, reason: "test: gpu-a looked dead" });
    expect(freed.released).toHaveLength(1);
    const result = await running;
    expect(result.code).not.toBe(0);
    expect(result.json()).toMatchObject({
      status: "error",
      validation_reason: expect.stringContaining("no longer holds the fleet maintenance slot"),
    });
    const serves = await fetch(`${f.site.env.KLR_VLLM_URL}/health`).then((r) => r.ok);
    expect(serves).toBe(true);
    const events = await f.events();
    expect(events.map((e) => e.event)).toEqual(expect.arrayContaining(["production_restored", "budget_charged"]));
    expect(events.map((e) => e.event)).not.toContain("promotion_written");
    expect(await f.slots("gpu-b").list()).toEqual([]);
  }, 120_000);
});
