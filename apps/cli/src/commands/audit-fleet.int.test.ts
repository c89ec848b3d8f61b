import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { createFleetPool } from "@gpu-canary/fleet-store";
import { postgresForFile, testdir } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

// This file stops and starts its own server: its tests never share it with another file's.
const postgres = postgresForFile();

/** Hosts on one new fleet database: each its own KLR_HOME and KLR_HOST_ID. */
async function fleet() {
  const url = await postgres.database("cli_audit");
  const pool = createFleetPool(url);
  onTestFinished(() => pool.end());
  const host = async (hostId: string) => {
    const env = { KLR_HOME: await testdir(), KLR_STATE_URL: url, KLR_HOST_ID: hostId };
    return { env, run: (argv: string[], now?: string) => cli(argv, env, now) };
  };
  return { url, pool, host };
}

type Line = Record<string, unknown> & { host_id: string; event: string; ts: string };
const lines = (stdout: string): Line[] =>
  stdout
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Line);

describe("gpu-canary audit query --fleet", () => {
  it("shows every host's events from the fleet database, in time order, each with its host_id; --host keeps one host", async () => {
    const { pool, host } = await fleet();
    const a = await host("gpu-a");
    const b = await host("gpu-b");
    expect((await a.run(["fleet", "init"])).code).toBe(0);
    const resetA = await a.run(["budget", "reset", "--yes", "--date", "20261128", "--reason", "from gpu-a"], "2026-11-28T13:40:00Z");
    expect(resetA.code).toBe(0);
    expect(resetA.stderr).not.toContain("was not copied");
    const resetB = await b.run(["budget", "reset", "--yes", "--date", "20261128", "--reason", "from gpu-b"], "2026-11-28T13:41:00Z");
    expect(resetB.code).toBe(0);
    // the commands' own close copied each host's trail: the database has both, once
    const copied = await pool.query<{ host_id: string }>("SELECT host_id FROM audit ORDER BY at");
    expect(copied.rows.map((r) => r.host_id)).toEqual(["gpu-a", "gpu-b"]);

    const all = await b.run(["audit", "query", "--fleet", "--json"]);
    expect(all.code, all.stderr).toBe(0);
    expect(lines(all.stdout).map((l) => [l.host_id, l.event, l.reason])).toEqual([
      ["gpu-a", "budget_reset", "from gpu-a"],
      ["gpu-b", "budget_reset", "from gpu-b"],
    ]);
    expect(lines(all.stdout)[0]).toMatchObject({ ts: "2026-11-28T13:40:00.000Z", date: "20261128", run_id: null });

    const onlyA = await b.run(["audit", "query", "--host", "gpu-a", "--json"]);
    expect(lines(onlyA.stdout).map((l) => [l.host_id, l.reason])).toEqual([["gpu-a", "from gpu-a"]]);
    const filtered = await a.run(["audit", "query", "--fleet", "--since", "2026-11-28T13:40:30Z", "--event", "budget_reset", "--json"]);
    expect(lines(filtered.stdout).map((l) => l.host_id)).toEqual(["gpu-b"]);
    const text = await a.run(["audit", "query", "--fleet"]);
    expect(text.stdout.split("\n")[0]).toMatch(/^gpu-a 2026-11-28T13:40:00Z budget_reset /);
    expect(text.stdout.split("\n")[1]).toMatch(/^gpu-b 2026-11-28T13:41:00Z budget_reset /);

    // without --fleet: this host's files only, as before
    expect(lines((await a.run(["audit", "query", "--json"])).stdout).map((l) => [l.host_id, l.reason])).toEqual([
      [undefined, "from gpu-a"],
    ]);
    // nothing twice, however often it is asked
    const count = await pool.query<{ n: string }>("SELECT count(*) AS n FROM audit");
    expect(Number(count.rows[0]?.n)).toBe(2);
  }, 60_000);

  it("copies a host's lines written while the database was away once it is back: nothing lost", async () => {
    const { host } = await fleet();
    const a = await host("gpu-a");
    const b = await host("gpu-b");
    expect((await a.run(["fleet", "init"])).code).toBe(0);
    const dir = join(a.env.KLR_HOME, "out", "orchestration", "epochs");
    await mkdir(dir, { recursive: true });
    await postgres.cluster.stop();
    try {
      // lines gpu-a wrote with the database away (a run's end, recorded locally)
      await appendFile(
        join(dir, "gpu_canary_20261128.jsonl"),
        `${JSON.stringify({ ts: "2026-11-28T03:00:00.000Z", event: "production_restored", run_id: "r-1", host: "h", pid: 1 })}\nnot json\n`,
      );
      const away = await b.run(["audit", "query", "--fleet", "--json"]);
      expect(away.code).toBe(3);
      expect(away.json().error).toMatchObject({ code: "FLEET_DB_UNREACHABLE" });
      expect(away.stdout + away.stderr).not.toContain(postgres.cluster.password);
    } finally {
      await postgres.cluster.start();
    }
    const back = await b.run(["audit", "query", "--fleet", "--json"]);
    expect(lines(back.stdout)).toEqual([]); // gpu-a has not been back to the database yet
    expect((await a.run(["fleet", "status"])).code).toBe(0); // any fleet command of gpu-a catches up
    const caught = lines((await b.run(["audit", "query", "--fleet", "--json"])).stdout);
    expect(caught.map((l) => [l.host_id, l.event ?? l.unparsed])).toEqual([
      ["gpu-a", "production_restored"],
      ["gpu-a", "not json"],
    ]);
  }, 60_000);

  it("a command whose trail cannot be copied warns once on stderr and succeeds; the next command catches up", async () => {
    const { pool, host } = await fleet();
    const a = await host("gpu-a");
    expect((await a.run(["fleet", "init"])).code).toBe(0);
    // the database refuses new audit rows for a while (NOT VALID: checked on new rows only)
    await pool.query("ALTER TABLE audit ADD CONSTRAINT refuse_for_a_while CHECK (false) NOT VALID");
    const reset = await a.run(["budget", "reset", "--yes", "--date", "20261128", "--reason", "while refused"]);
    expect(reset.code).toBe(0);
    const warnings = reset.stderr.split("\n").filter((l) => l.startsWith("warning:"));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(
      /^warning: this host's audit trail was not copied to the fleet database 127\.0\.0\.1:\d+\/\S+ \(.*refuse_for_a_while.*\); the next command that reaches it catches up$/,
    );
    expect(reset.stderr).not.toContain(postgres.cluster.password);
    // audit query --fleet still answers with what the database has, warning once
    const query = await a.run(["audit", "query", "--fleet", "--json"]);
    expect(query.code, query.stderr).toBe(0);
    expect(lines(query.stdout)).toEqual([]);
    expect(query.stderr.split("\n").filter((l) => l.startsWith("warning:"))).toHaveLength(1);
    await pool.query("ALTER TABLE audit DROP CONSTRAINT refuse_for_a_while");
    expect((await a.run(["fleet", "status"])).stderr).not.toContain("was not copied");
    const rows = await pool.query<{ reason: string }>("SELECT record->>'reason' AS reason FROM audit WHERE host_id = 'gpu-a'");
    expect(rows.rows).toEqual([{ reason: "while refused" }]);
  }, 60_000);

  it("exits 2 naming KLR_STATE_URL without it", async () => {
    const home = await testdir();
    for (const argv of [
      ["audit", "query", "--fleet"],
      ["audit", "query", "--host", "gpu-b"],
    ]) {
      const result = await cli([...argv, "--json"], { KLR_HOME: home });
      expect(result.code).toBe(2);
      expect(result.json().error).toMatchObject({ code: "FLEET_NOT_CONFIGURED", message: expect.stringContaining("KLR_STATE_URL") });
    }
  });
});
