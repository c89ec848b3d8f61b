import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { manualClock, testdir } from "@gpu-canary/testing";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createRateLimiter, decide, fileRateLimitStore } from "./rate-limits.ts";

const rule = { maxRuns: 3, windowHours: 24, cooldownHours: 6 };

async function setup(start = "2026-11-28T08:00:00Z", r = rule) {
  const dir = await testdir();
  const clock = manualClock(start);
  const path = join(dir, "rate_limits.json");
  return { path, clock, limiter: createRateLimiter({ store: fileRateLimitStore(path), rule: r, now: clock.now }) };
}

describe("the rate limiter", () => {
  it("admits a first run and records it", async () => {
    const { limiter, path } = await setup();
    const decision = await limiter.admit("gpu_allocation", "run-1");
    expect(decision.allowed).toBe(true);
    expect(JSON.parse(await readFile(path, "utf8"))).toEqual({
      subsystems: { gpu_allocation: { runs: [{ run_id: "run-1", at: "2026-11-28T08:00:00.000Z" }] } },
    });
  });

  it("refuses during the cooldown and says when the next run is allowed", async () => {
    const { limiter, clock } = await setup();
    await limiter.admit("gpu_allocation", "run-1");
    clock.advance(5 * 3600_000);
    const refused = await limiter.admit("gpu_allocation", "run-2");
    expect(refused.allowed).toBe(false);
    expect(refused.nextAllowedAt.toISOString()).toBe("2026-11-28T14:00:00.000Z");
    expect(refused.reason).toContain("6 h cooldown ends at 2026-11-28T14:00:00.000Z");
    clock.advance(3600_000);
    expect((await limiter.admit("gpu_allocation", "run-2")).allowed).toBe(true);
  });

  it("gives the reason's times in the maintenance zone; the decision keeps the instant", async () => {
    const dir = await testdir();
    const clock = manualClock("2026-11-28T08:00:00Z");
    const store = fileRateLimitStore(join(dir, "rate_limits.json"));
    const limiter = createRateLimiter({ store, rule, now: clock.now, timeZone: "Asia/Tokyo" });
    await limiter.admit("gpu_allocation", "run-1");
    clock.advance(3600_000);
    const refused = await limiter.check("gpu_allocation");
    expect(refused.reason).toBe("gpu_allocation last ran at 2026-11-28 17:00 GMT+9; the 6 h cooldown ends at 2026-11-28 23:00 GMT+9");
    expect(refused.nextAllowedAt.toISOString()).toBe("2026-11-28T14:00:00.000Z");
  });

  it("refuses a fourth run in 24 hours and names when the oldest leaves the window", async () => {
    const { limiter, clock } = await setup();
    for (const id of ["a", "b", "c"]) {
      expect((await limiter.admit("gpu_allocation", id)).allowed).toBe(true);
      clock.advance(6 * 3600_000);
    }
    const refused = await limiter.check("gpu_allocation");
    expect(refused).toMatchObject({ allowed: false, runsInWindow: 3 });
    expect(refused.reason).toContain("already ran 3 times in the last 24 h (at most 3)");
    expect(refused.nextAllowedAt.toISOString()).toBe("2026-11-29T08:00:00.000Z");
  });

  it("keeps subsystems apart", async () => {
    const { limiter } = await setup();
    await limiter.admit("gpu_allocation", "a");
    expect((await limiter.check("whisper")).allowed).toBe(true);
  });

  it("never grants an extra run when the clock steps back", async () => {
    const { limiter, clock } = await setup();
    await limiter.admit("gpu_allocation", "a");
    clock.advance(-48 * 3600_000);
    const decision = await limiter.admit("gpu_allocation", "b");
    expect(decision.allowed).toBe(false);
    expect(decision.nextAllowedAt.toISOString()).toBe("2026-11-28T14:00:00.000Z");
  });

  it("fails closed on an unreadable record and leaves it as it is", async () => {
    const { limiter, path } = await setup();
    await writeFile(path, '{"subsystems": {"gpu_allocation": {"runs": [{"run_id": "x", "at": "yesterday"}]}}}');
    await expect(limiter.admit("gpu_allocation", "b")).rejects.toMatchObject({
      code: "RATE_LIMITS_UNREADABLE",
      message: expect.stringContaining(path),
    });
    await expect(limiter.check("gpu_allocation")).rejects.toMatchObject({ code: "RATE_LIMITS_UNREADABLE" });
    expect(await readFile(path, "utf8")).toContain("yesterday");
  });

  it("never admits more than the maximum in any rolling window, nor two runs inside a cooldown", () => {
    const step = fc.integer({ min: -10 * 3600_000, max: 30 * 3600_000 });
    fc.assert(
      fc.property(
        fc.array(step, { maxLength: 40 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 0, max: 8 }),
        (steps, maxRuns, cooldownHours) => {
          const r = { maxRuns, windowHours: 24, cooldownHours };
          let t = Date.parse("2026-11-28T00:00:00Z");
          const runs: { at: string }[] = [];
          for (const delta of steps) {
            t += delta;
            if (decide(r, "s", runs, new Date(t)).allowed) runs.push({ at: new Date(t).toISOString() });
          }
          const times = runs.map((x) => Date.parse(x.at)).sort((a, b) => a - b);
          for (const start of times) {
            expect(times.filter((x) => x >= start && x < start + 24 * 3600_000).length).toBeLessThanOrEqual(maxRuns);
          }
          for (let i = 1; i < times.length; i += 1) {
            expect((times[i] ?? 0) - (times[i - 1] ?? 0)).toBeGreaterThanOrEqual(cooldownHours * 3600_000);
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
