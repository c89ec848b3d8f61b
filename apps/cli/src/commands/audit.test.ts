import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

async function withEvents() {
  const dir = await testdir();
  const epochs = join(dir, "out", "orchestration", "epochs");
  await mkdir(epochs, { recursive: true });
  const line = (ts: string, event: string, run: string | null, extra: object = {}) =>
    JSON.stringify({ ts, event, run_id: run, host: "h", pid: 1, ...extra });
  await writeFile(
    join(epochs, "gpu_canary_20261127.jsonl"),
    [
      line("2026-11-27T08:00:00.000Z", "lock_acquired", "r1", { generation: 1, owner: "x" }),
      line("2026-11-27T08:01:00.000Z", "lock_released", "r1", { generation: 1 }),
    ].join("\n") + "\n",
  );
  await writeFile(
    join(epochs, "gpu_canary_20261128.jsonl"),
    [
      line("2026-11-28T08:00:00.000Z", "gate_refused", "r2", { gate: "window", reason: "closed" }),
      "{torn",
      line("2026-11-28T09:00:00.000Z", "budget_reset", null, { date: "20261128", previous_seconds_used: 5, reason: "x" }),
    ].join("\n") + "\n",
  );
  return dir;
}

describe("gpu-canary audit", () => {
  it("tails one readable line per event and warns about a corrupt line", async () => {
    const dir = await withEvents();
    const result = await cli(["audit", "tail", "-n", "2"], { KLR_HOME: dir });
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(
      "2026-11-28T08:00:00Z gate_refused run=r2 pid=1 gate=window reason=closed\n2026-11-28T09:00:00Z budget_reset pid=1 date=20261128 previous_seconds_used=5 reason=x\n",
    );
    expect(result.stderr).toContain("gpu_canary_20261128.jsonl:2: skipped a corrupt audit line");
  });

  it("prints JSON lines that jq reads", async () => {
    const dir = await withEvents();
    const lines = (await cli(["audit", "tail", "--json"], { KLR_HOME: dir })).stdout.trim().split("\n");
    expect(lines.map((l) => (JSON.parse(l) as { event: string }).event)).toEqual([
      "lock_acquired",
      "lock_released",
      "gate_refused",
      "budget_reset",
    ]);
  });

  it("queries by time, event and run", async () => {
    const dir = await withEvents();
    const since = await cli(["audit", "query", "--since", "2026-11-28T00:00:00Z", "--json"], { KLR_HOME: dir });
    expect(since.stdout.trim().split("\n")).toHaveLength(2);
    const run = await cli(["audit", "query", "--run", "r1"], { KLR_HOME: dir });
    expect(run.stdout.trim().split("\n")).toHaveLength(2);
    const kind = await cli(["audit", "query", "--event", "gate_refused", "--until", "2026-11-28T07:00"], { KLR_HOME: dir });
    expect(kind.stdout).toContain("gate_refused");
  });

  it("refuses an unknown event name or a bad time with exit 2", async () => {
    const dir = await withEvents();
    const unknown = await cli(["audit", "query", "--event", "lock_aquired"], { KLR_HOME: dir });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("--event: expected one of");
    expect((await cli(["audit", "query", "--since", "yesterday"], { KLR_HOME: dir })).code).toBe(2);
    // At the edge of what a date holds: a usage error, not a crash.
    for (const flag of ["--since", "--until"]) {
      const edge = await cli(["audit", "query", flag, "+275760-09-13T00:00:00Z"], { KLR_HOME: dir });
      expect(edge.code).toBe(2);
      expect(edge.stderr).not.toContain("INTERNAL");
    }
    expect((await cli(["audit", "tail", "-n", "-3"], { KLR_HOME: dir })).code).toBe(2);
  });

  it("records an emergency budget reset", async () => {
    const dir = await testdir();
    await cli(["budget", "reset", "--yes", "--reason", "outage"], { KLR_HOME: dir });
    const tail = await cli(["audit", "tail", "--json"], { KLR_HOME: dir });
    expect(JSON.parse(tail.stdout)).toMatchObject({ event: "budget_reset", reason: "outage", run_id: null });
  });
});
