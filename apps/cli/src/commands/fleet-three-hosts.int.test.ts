import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createFleetPool, createFleetSlots, migrate } from "@gpu-canary/fleet-store";
import { nightOf } from "@gpu-canary/policy";
import { postgresForFile, testdir, until } from "@gpu-canary/testing";
import { type SimSite, createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";
import { shippedArgs } from "../test-fixtures/shipped.ts";

const postgres = postgresForFile();

const candidate = JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "small" });
const HOSTS = ["gpu-a", "gpu-b", "gpu-c"];

/** Three simulated hosts — three KLR_HOMEs, three productions — on one new migrated database, one slot between them. */
async function fleetOfThree() {
  const url = await postgres.database("three");
  const pool = createFleetPool(url);
  onTestFinished(() => pool.end());
  await migrate(pool);
  const hosts = await Promise.all(
    HOSTS.map(async (hostId) => {
      const site = await createSimSite(await testdir(), {
        settings: { KLR_STATE_URL: url, KLR_HOST_ID: hostId, KLR_FLEET_MAX_CONCURRENT: "1" },
      });
      onTestFinished(() => site.cleanup());
      await site.startProduction();
      const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
      const layout = layoutFor(config);
      const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
      const night = nightOf(config.maintenanceWindow, config.maintenanceTimeZone, new Date());
      return { hostId, site, night, events: () => audit.query(), budgetFile: layout.budgetFile(night) };
    }),
  );
  return { url, pool, hosts };
}

/** `gpu-canary evaluate` as its own process (the shipped bundle), as each host's cron would start it. */
function evaluate(site: SimSite, flags: string[]) {
  return evaluateProcess(site, flags).result;
}

function evaluateProcess(site: SimSite, flags: string[]) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
  const child = spawn(process.execPath, shippedArgs(["evaluate", "--candidate", candidate, "--json", ...flags]), {
    env: { ...clean, ...site.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  onTestFinished(() => void child.kill("SIGKILL"));
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  const result = new Promise<{ code: number | null; json: Record<string, unknown>; stderr: string }>((resolve) =>
    child.once("exit", (code) => resolve({ code, json: JSON.parse(stdout || "{}") as Record<string, unknown>, stderr })),
  );
  return { child, result, stderr: () => stderr };
}

/**
 * The simulator's own events, from production's log (vLLM's line format, to the second): each
 * `received SIGTERM` (production stopped) to the next `Starting vLLM API server` (serving again).
 */
function outagesInLog(site: SimSite): { from: number; to: number }[] {
  const at = (line: string) => {
    const m = /^INFO (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) /.exec(line);
    if (!m) throw new Error(`no time in ${line}`);
    const [, mo, d, h, mi, s] = m.map(Number) as [number, number, number, number, number, number];
    return Date.UTC(2000, mo - 1, d, h, mi, s);
  };
  const out: { from: number; to: number }[] = [];
  let from: number | null = null;
  for (const line of readFileSync(join(site.dir, "production.log"), "utf8").split("\n")) {
    if (line.includes("received SIGTERM")) from = at(line);
    else if (line.includes("Starting vLLM API server") && from !== null) {
      out.push({ from, to: at(line) });
      from = null;
    }
  }
  return out;
}

/** Production's outages as a client sees them: /health polled every 50 ms until stopped. */
function watchHealth(site: SimSite) {
  const outages: { from: number; to: number }[] = [];
  let downSince: number | null = null;
  let stopped = false;
  const done = (async () => {
    while (!stopped) {
      const ok = await fetch(`${site.env.KLR_VLLM_URL}/health`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      );
      const now = Date.now();
      if (!ok && downSince === null) downSince = now;
      if (ok && downSince !== null) {
        outages.push({ from: downSince, to: now });
        downSince = null;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  return {
    outages,
    stop: async () => {
      stopped = true;
      await done;
    },
  };
}

function overlaps(intervals: { from: number; to: number }[]): boolean {
  const sorted = [...intervals].sort((a, b) => a.from - b.from);
  // touching is not overlapping: one host's restore and the next one's stop can fall in the same second of the log
  return sorted.some((i, n) => n > 0 && i.from < (sorted[n - 1]?.to ?? 0));
}

describe("three hosts, one database, one maintenance slot", () => {
  it("serves three quiesced canaries started at the same instant with --wait one at a time; each host's budget is charged what its production was down, and its run publishes its verdict and its promotion", async () => {
    const { pool, hosts } = await fleetOfThree();
    const watches = hosts.map((h) => watchHealth(h.site));
    const results = await Promise.all(hosts.map((h) => evaluate(h.site, ["--wait", "240"])));
    await Promise.all(watches.map((w) => w.stop()));
    for (const r of results) expect(r).toMatchObject({ code: 0, json: { status: "passed", mode: "canary" } });

    // Never two in maintenance at once: from the simulators' own logs, and from gpu-canary's audit (to the millisecond).
    const logged = hosts.map((h) => outagesInLog(h.site));
    for (const o of logged) expect(o).toHaveLength(1);
    expect(overlaps(logged.flat())).toBe(false);
    const audited = await Promise.all(
      hosts.map(async (h) => {
        const events = await h.events();
        const stopped = events.find((e) => e.event === "production_stopped");
        const restored = events.find((e) => e.event === "production_restored");
        return { from: Date.parse(stopped?.ts ?? ""), to: Date.parse(restored?.ts ?? "") };
      }),
    );
    expect(overlaps(audited)).toBe(false);

    // Each host's own budget, in the database and its local copy, within 0.5 s of the outage its clients saw.
    for (const [i, h] of hosts.entries()) {
      const seen = watches[i]?.outages ?? [];
      expect(seen).toHaveLength(1);
      const outage = ((seen[0]?.to ?? 0) - (seen[0]?.from ?? 0)) / 1000;
      const row = await pool.query<{ doc: { seconds_used: number } }>("SELECT doc FROM documents WHERE host_id = $1 AND key = $2", [
        h.hostId,
        `budget/${h.night}`,
      ]);
      const charged = row.rows[0]?.doc.seconds_used ?? 0;
      expect(Math.abs(charged - outage)).toBeLessThan(0.5);
      expect((JSON.parse(readFileSync(h.budgetFile, "utf8")) as { seconds_used: number }).seconds_used).toBe(charged);
    }

    const status = (await cli(["fleet", "status", "--json"], hosts[0]?.site.env ?? {}, new Date().toISOString())).json();
    expect((status.hosts as { host_id: string }[]).map((h) => h.host_id)).toEqual(HOSTS);
    expect(status.slots).toEqual([]);
    // what each run published as it ended (gpu-b and gpu-c ran nothing since): its last run, its promotion pending
    for (const [i, h] of (status.hosts as Record<string, unknown>[]).entries()) {
      const runId = results[i]?.json.run_id;
      expect(h).toMatchObject({ last_run: { run_id: runId, verdict: "passed", mode: "canary" }, pending_promotions: [runId] });
    }
    expect((status.pending_promotions as { host_id: string }[]).map((p) => p.host_id).sort()).toEqual(HOSTS);
    // one audit trail: each run copied its host's to the database as it ended
    const audit = await cli(
      ["audit", "query", "--fleet", "--event", "production_stopped", "--json"],
      hosts[0]?.site.env ?? {},
      new Date().toISOString(),
    );
    expect(audit.code, audit.stderr).toBe(0);
    const stops = audit.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { host_id: string; ts: string });
    expect(stops.map((e) => e.host_id).sort()).toEqual(HOSTS);
    expect(stops.map((e) => e.ts)).toEqual(stops.map((e) => e.ts).sort());
  }, 300_000);

  it("gives the slot to one of three quiesced canaries started at the same instant; the others are refused (exit 3) naming it", async () => {
    const { hosts } = await fleetOfThree();
    const results = await Promise.all(hosts.map((h) => evaluate(h.site, [])));
    const served = results.flatMap((r, i) => (r.code === 0 ? [HOSTS[i]] : []));
    expect(served).toHaveLength(1);
    for (const r of results.filter((r) => r.code !== 0)) {
      expect(r).toMatchObject({ code: 3, json: { status: "refused", gate: "fleet_slot" } });
      expect(String(r.json.validation_reason)).toContain(`${served[0]} (run `);
    }
    // the refused hosts never stopped their production
    for (const [i, h] of hosts.entries()) expect(outagesInLog(h.site)).toHaveLength(HOSTS[i] === served[0] ? 1 : 0);
  }, 300_000);

  it("SIGKILL of a host's run: its slot stays held, the other hosts are refused naming it, until that host's recover", async () => {
    const { hosts, pool } = await fleetOfThree();
    const [a, b] = hosts as [(typeof hosts)[0], (typeof hosts)[0]];
    const killed = evaluateProcess(a.site, []);
    await until(
      () => / evaluate: testing: load: /.test(killed.stderr()),
      () => `gpu-a's run under load: ${killed.stderr()}`,
      {
        timeoutMs: 60_000,
      },
    );
    killed.child.kill("SIGKILL");
    expect((await killed.result).code).toBe(null);
    const slots = createFleetSlots({ pool, hostId: "gpu-b", maxConcurrent: 1 });
    const held = await slots.list();
    expect(held.map((s) => s.hostId)).toEqual(["gpu-a"]);

    // gpu-b is refused, naming gpu-a and its run, for as long as gpu-a has not recovered
    const refused = await evaluate(b.site, []);
    expect(refused).toMatchObject({ code: 3, json: { status: "refused", gate: "fleet_slot" } });
    expect(String(refused.json.validation_reason)).toContain(`gpu-a (run ${held[0]?.runId}`);
    expect(outagesInLog(b.site)).toHaveLength(0);

    const recovered = await cli(["recover", "--json"], a.site.env, new Date().toISOString());
    expect(recovered.code).toBe(0);
    expect(recovered.json()).toMatchObject({
      action: "recovered",
      production_serving: true,
      detail: expect.stringContaining(`released this host's fleet maintenance slot (run ${held[0]?.runId})`),
    });
    expect(await slots.list()).toEqual([]);
    expect(await evaluate(b.site, [])).toMatchObject({ code: 0, json: { status: "passed" } });
    expect(overlaps([...outagesInLog(a.site), ...outagesInLog(b.site)])).toBe(false);
  }, 300_000);
});
