import { appendFile, readFile, readdir, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { manualClock, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createAuditFeed } from "./audit-feed.ts";
import { formatEvent } from "./format.ts";

async function setup(start = "2026-11-28T08:00:00Z") {
  const dir = join(await testdir(), "epochs");
  const clock = manualClock(start);
  const warnings: string[] = [];
  const feed = createAuditFeed({
    dir,
    timeZone: "America/New_York",
    now: clock.now,
    host: "gpu-host",
    pid: 4242,
    onWarning: (w) => warnings.push(w),
  });
  return { dir, clock, feed, warnings };
}

describe("the audit feed", () => {
  it("appends one JSON object a line, stamped with ts, host, pid and run_id", async () => {
    const { dir, feed } = await setup();
    await feed.append({ event: "lock_acquired", run_id: "run-1", generation: 3, owner: "gpu-canary evaluate" });
    await feed.append({ event: "budget_reset", date: "20261128", previous_seconds_used: 30, reason: "emergency" });
    const lines = (await readFile(join(dir, "gpu_canary_20261128.jsonl"), "utf8"))
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as unknown);
    expect(lines).toEqual([
      {
        ts: "2026-11-28T08:00:00.000Z",
        event: "lock_acquired",
        run_id: "run-1",
        host: "gpu-host",
        pid: 4242,
        generation: 3,
        owner: "gpu-canary evaluate",
      },
      {
        ts: "2026-11-28T08:00:00.000Z",
        event: "budget_reset",
        run_id: null,
        host: "gpu-host",
        pid: 4242,
        date: "20261128",
        previous_seconds_used: 30,
        reason: "emergency",
      },
    ]);
  });

  it("names the day file by the date in the maintenance zone", async () => {
    const { dir, feed } = await setup("2026-11-29T03:00:00Z"); // 22:00 on the 28th in New York
    await feed.append({ event: "canary_healthy" });
    expect(await readdir(dir)).toEqual(["gpu_canary_20261128.jsonl"]);
  });

  it("refuses a known event with missing fields, and an oversized line", async () => {
    const { feed, dir } = await setup();
    // @ts-expect-error a known event without its fields
    await expect(feed.append({ event: "lock_acquired" })).rejects.toThrow();
    await expect(feed.append({ event: "oom_detected", kind: "oom_runtime", line: "x".repeat(70_000) })).rejects.toMatchObject({
      code: "AUDIT_WRITE_FAILED",
    });
    expect(await readdir(dir).catch(() => [])).toEqual([]);
  });

  it("a folder where the day file goes: a fault naming the file, the cause and the fix, not Node's words", async () => {
    const { feed, dir } = await setup();
    const day = join(dir, "gpu_canary_20261128.jsonl");
    await mkdir(day, { recursive: true });
    const error = (await feed.append({ event: "canary_healthy" }).then(null, (e: unknown) => e)) as {
      code: string;
      message: string;
      hint: string;
    };
    expect(error).toMatchObject({
      code: "AUDIT_WRITE_FAILED",
      message: `could not append to the audit trail ${day}: a folder is where the file should be (EISDIR)`,
    });
    expect(error.hint).toContain(`move the folder ${day} aside`);
  });

  it("tails the last N events across day files", async () => {
    const { feed, clock } = await setup();
    for (let i = 0; i < 5; i += 1) {
      await feed.append({ event: "gate_refused", run_id: `r${i}`, gate: "window", reason: "closed" });
      clock.advance(12 * 3600_000);
    }
    expect((await feed.tail(3)).map((e) => e.run_id)).toEqual(["r2", "r3", "r4"]);
    expect((await feed.tail(20)).map((e) => e.run_id)).toEqual(["r0", "r1", "r2", "r3", "r4"]);
  });

  it("queries by time, event and run across days", async () => {
    const { feed, clock } = await setup();
    for (let i = 0; i < 6; i += 1) {
      await feed.append(i % 2 ? { event: "canary_started", run_id: `r${i % 3}` } : { event: "canary_stopped", run_id: `r${i % 3}` });
      clock.advance(10 * 3600_000);
    }
    const since = new Date("2026-11-28T18:00:00Z");
    const until = new Date("2026-11-29T22:00:00Z");
    expect((await feed.query({ since, until })).map((e) => e.ts)).toEqual([
      "2026-11-28T18:00:00.000Z",
      "2026-11-29T04:00:00.000Z",
      "2026-11-29T14:00:00.000Z",
    ]);
    expect((await feed.query({ event: "canary_started" })).length).toBe(3);
    expect((await feed.query({ runId: "r1" })).map((e) => e.event)).toEqual(["canary_started", "canary_stopped"]);
  });

  it("skips a corrupt line with a warning and ignores a half-written last line", async () => {
    const { dir, feed, warnings } = await setup();
    await feed.append({ event: "canary_healthy", run_id: "a" });
    await appendFile(join(dir, "gpu_canary_20261128.jsonl"), "{not json\n[1,2]\n");
    await feed.append({ event: "canary_healthy", run_id: "b" });
    await appendFile(join(dir, "gpu_canary_20261128.jsonl"), '{"ts": "2026-11-28T08:00:00.000Z", "ev');
    expect((await feed.tail(10)).map((e) => e.run_id)).toEqual(["a", "b"]);
    expect(warnings).toEqual([expect.stringContaining("gpu_canary_20261128.jsonl:2: skipped"), expect.stringContaining(":3: skipped")]);
  });

  it("reads events of kinds it does not know, as a newer version may write", async () => {
    const { dir, feed } = await setup();
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, "gpu_canary_20261128.jsonl"),
      '{"ts":"2026-11-28T08:00:00.000Z","event":"future_thing","run_id":null,"host":"h","pid":1,"x":1}\n',
    );
    expect(await feed.tail(1)).toEqual([expect.objectContaining({ event: "future_thing", x: 1 })]);
  });

  it("follows new events, across the midnight file switch", async () => {
    const { feed, clock, dir } = await setup("2026-11-29T04:59:00Z"); // 23:59 in New York
    await feed.append({ event: "canary_started", run_id: "before" });
    const controller = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const event of feed.follow({ pollMs: 10, signal: controller.signal })) {
        seen.push(String(event.run_id));
        if (seen.length === 3) controller.abort();
      }
    })();
    await new Promise((resolve) => setTimeout(resolve, 50));
    await feed.append({ event: "canary_healthy", run_id: "late-evening" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    clock.advance(2 * 60_000);
    await feed.append({ event: "canary_tested", run_id: "after-midnight" });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await appendFile(join(dir, "gpu_canary_20261129.jsonl"), "garbage\n");
    await feed.append({ event: "canary_stopped", run_id: "next" });
    await following;
    expect(seen).toEqual(["late-evening", "after-midnight", "next"]);
  });

  it("removes day files past the retention", async () => {
    const { feed, clock } = await setup();
    for (let i = 0; i < 5; i += 1) {
      await feed.append({ event: "canary_healthy" });
      clock.advance(24 * 3600_000);
    }
    clock.advance(-24 * 3600_000);
    expect(await feed.prune(2)).toEqual(["20261128", "20261129", "20261130"]);
    expect((await feed.tail(10)).length).toBe(2);
  });

  it("formats an event as one readable line", () => {
    expect(
      formatEvent({
        ts: "2026-11-28T08:00:00.000Z",
        event: "gate_refused",
        run_id: "r1",
        host: "h",
        pid: 7,
        gate: "window",
        reason: "window closed",
        n: 2,
      }),
    ).toBe('2026-11-28T08:00:00Z gate_refused run=r1 pid=7 gate=window reason="window closed" n=2');
  });
});
