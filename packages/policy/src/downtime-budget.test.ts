import { readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fixedNow, testdir } from "@gpu-canary/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createDowntimeBudget, fileBudgetStore } from "./downtime-budget.ts";

async function setup(maxSeconds = 60) {
  const dir = await testdir();
  const pathFor = (date: string) => join(dir, `gpu_budget_${date}.json`);
  const budget = createDowntimeBudget({ storeFor: fileBudgetStore(pathFor), maxSeconds, now: fixedNow("2026-11-28T08:30:00Z") });
  return { dir, pathFor, budget };
}

describe("the downtime budget", () => {
  it("reads a missing night as nothing used", async () => {
    const { budget } = await setup();
    expect(await budget.status("20261128")).toMatchObject({
      secondsUsed: 0,
      maxSeconds: 60,
      secondsLeft: 60,
      exhausted: false,
      recorded: false,
    });
  });

  it('reads the checklist\'s bare {"seconds_used": N} file', async () => {
    const { budget, pathFor } = await setup();
    await writeFile(pathFor("20261128"), '{\n  "seconds_used": 12.5\n}\n');
    expect(await budget.status("20261128")).toMatchObject({ secondsUsed: 12.5, secondsLeft: 47.5, recorded: true });
  });

  it("charges a run once, to the millisecond, and records who and when", async () => {
    const { budget, pathFor } = await setup();
    expect((await budget.charge("20261128", "run-a", 12.34567)).charged).toBe(true);
    const again = await budget.charge("20261128", "run-a", 12.34567);
    expect(again.charged).toBe(false);
    expect(again.status.secondsUsed).toBe(12.346);
    expect(JSON.parse(await readFile(pathFor("20261128"), "utf8"))).toEqual({
      seconds_used: 12.346,
      charges: [{ run_id: "run-a", seconds: 12.346, at: "2026-11-28T08:30:00.000Z" }],
    });
  });

  it("records a measured overrun as it is while seconds_left stays at 0", async () => {
    const { budget } = await setup(60);
    await budget.charge("20261128", "run-a", 50);
    const { status } = await budget.charge("20261128", "run-b", 25.5);
    expect(status).toMatchObject({ secondsUsed: 75.5, secondsLeft: 0, exhausted: true });
    expect(await budget.canAfford("20261128", 1)).toMatchObject({ ok: false });
  });

  it("affords a worst case only when the budget left covers it", async () => {
    const { budget } = await setup(60);
    expect((await budget.canAfford("20261128", 55)).ok).toBe(true);
    await budget.charge("20261128", "run-a", 10);
    const answer = await budget.canAfford("20261128", 55);
    expect(answer.ok).toBe(false);
    expect(answer.reason).toBe("only 50 s of the 60 s downtime budget of the night of 2026-11-28 is left");
  });

  it.each([
    ["not json", "is not valid JSON"],
    ['{"seconds_used": -3}', "must not be negative"],
    ['{"seconds_used": "5"}', "must be a number of seconds"],
    ['{"used": 5}', "seconds_used"],
    ["", "is empty"],
  ])("fails closed on %j, naming the file and the repair, and changes nothing", async (content, problem) => {
    const { budget, pathFor, dir } = await setup();
    const path = pathFor("20261128");
    await writeFile(path, content);
    for (const action of [
      () => budget.status("20261128"),
      () => budget.canAfford("20261128", 1),
      () => budget.charge("20261128", "r", 1),
    ]) {
      await expect(action()).rejects.toMatchObject({
        code: "BUDGET_UNREADABLE",
        kind: "fault",
        message: expect.stringContaining(path),
        hint: expect.stringContaining("gpu-canary budget reset --yes --date 20261128"),
      });
    }
    await expect(budget.status("20261128")).rejects.toThrow(problem);
    expect(await readFile(path, "utf8")).toBe(content);
    expect(await readdir(dir)).toEqual(["gpu_budget_20261128.json"]);
  });

  it("resets to zero on request, keeping what was there in the file", async () => {
    const { budget, pathFor } = await setup();
    await budget.charge("20261128", "run-a", 30);
    const { previousSecondsUsed, status } = await budget.reset("20261128", "emergency");
    expect(previousSecondsUsed).toBe(30);
    expect(status.secondsUsed).toBe(0);
    const file = JSON.parse(await readFile(pathFor("20261128"), "utf8"));
    expect(file.resets[0]).toMatchObject({ previous_seconds_used: 30, reason: "emergency", previous_charges: [{ run_id: "run-a" }] });
  });

  it("repairs an unreadable file by reset, keeping its text", async () => {
    const { budget, pathFor } = await setup();
    await writeFile(pathFor("20261128"), "{garbage");
    await budget.reset("20261128");
    const file = JSON.parse(await readFile(pathFor("20261128"), "utf8"));
    expect(file.seconds_used).toBe(0);
    expect(file.resets[0]).toMatchObject({
      previous_seconds_used: null,
      previous_text: "{garbage",
      previous_problem: expect.stringContaining("not valid JSON"),
    });
    expect((await budget.status("20261128")).secondsUsed).toBe(0);
  });

  it("never goes negative and never loses a charge, whatever the sequence", async () => {
    const { dir } = await setup();
    let round = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.double({ min: 0, max: 40, noNaN: true })), { maxLength: 12 }),
        async (charges) => {
          round += 1;
          const budget = createDowntimeBudget({ storeFor: fileBudgetStore((date) => join(dir, `b${round}_${date}.json`)), maxSeconds: 60 });
          const expected = new Map<number, number>();
          for (const [run, seconds] of charges) {
            await budget.charge("20261128", `run-${run}`, seconds);
            if (!expected.has(run)) expected.set(run, Math.round(seconds * 1000) / 1000);
          }
          const status = await budget.status("20261128");
          const total = [...expected.values()].reduce((a, b) => a + b, 0);
          expect(status.secondsUsed).toBeCloseTo(total, 6);
          expect(status.secondsLeft).toBeGreaterThanOrEqual(0);
          expect(status.secondsLeft).toBeCloseTo(Math.max(0, 60 - status.secondsUsed), 6);
          expect(status.charges).toHaveLength(expected.size);
        },
      ),
      { numRuns: 60 },
    );
  });
});
