import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createFleetPool, createFleetSlots, migrate } from "@gpu-canary/fleet-store";
import { postgresForFile, testdir } from "@gpu-canary/testing";
import { applySiteOptions, createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

const postgres = postgresForFile();

describe("gpu-canary apply in a fleet (KLR_STATE_URL)", () => {
  it("is refused (exit 3) with production's file untouched while another host holds the only slot, and applies once it is released", async () => {
    const url = await postgres.database("apply_fleet");
    const pool = createFleetPool(url);
    onTestFinished(() => pool.end());
    await migrate(pool);
    const site = await createSimSite(await testdir(), applySiteOptions({ KLR_STATE_URL: url, KLR_HOST_ID: "gpu-a" }));
    onTestFinished(() => site.cleanup());
    await site.startProduction();
    const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
    const layout = layoutFor(config);
    const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
    await mkdir(layout.promotionsDir, { recursive: true });
    await writeFile(
      join(layout.promotionsDir, "r-good.json"),
      JSON.stringify({
        run_id: "r-good",
        created_at: new Date().toISOString(),
        subsystem: "gpu_allocation",
        candidate: { vllm_memory_util: 0.8, whisper_model_size: config.whisperSize },
        path: "quiesced",
        whisper_verified: false,
        llm_latency_ms: 12,
      }),
    );
    const run = (argv: string[]) => cli(argv, site.env, new Date().toISOString());
    const configFile = site.vllmConfigFile ?? "";
    const before = await readFile(configFile, "utf8");
    const b = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    expect(await b.acquire("r-b-1")).toMatchObject({ ok: true });

    const refused = await run(["apply", "r-good", "--json"]);
    expect(refused.code).toBe(3);
    expect(refused.json()).toMatchObject({ status: "refused", gate: "fleet_slot" });
    expect(String(refused.json().reason)).toContain("gpu-b (run r-b-1");
    expect(await readFile(configFile, "utf8")).toBe(before);
    expect((await audit.query()).map((e) => e.event)).not.toContain("production_stopped");

    await b.release({ runId: "r-b-1" });
    const applied = await run(["apply", "r-good", "--json"]);
    expect(applied.json(), applied.stdout).toMatchObject({ status: "applied", from: 0.7, to: 0.8 });
    expect(applied.code).toBe(0);
    expect(await b.list()).toEqual([]);
  }, 180_000);
});
