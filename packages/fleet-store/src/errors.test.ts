import { describe, expect, it } from "vitest";
import { FleetSlotsFullError } from "./errors.ts";

describe("FleetSlotsFullError", () => {
  it("names every holder with its run and since when, and how to release a dead one (exit 3)", () => {
    const holders = [
      { hostId: "gpu-a", runId: "r1", token: 7, acquiredAt: new Date("2026-11-28T08:00:00Z"), renewedAt: new Date("2026-11-28T08:01:00Z") },
      { hostId: "gpu-b", runId: "r2", token: 9, acquiredAt: new Date("2026-11-28T08:02:00Z"), renewedAt: new Date("2026-11-28T08:02:00Z") },
    ];
    const error = new FleetSlotsFullError(2, holders);
    expect(error.message).toBe(
      "all 2 fleet maintenance slots are held: gpu-a (run r1, since 2026-11-28T08:00:00.000Z), gpu-b (run r2, since 2026-11-28T08:02:00.000Z)",
    );
    expect(error).toMatchObject({ code: "FLEET_SLOTS_FULL", kind: "refused", exitCode: 3 });
    expect(error.hint).toContain("gpu-canary fleet release HOST --force");
    expect(JSON.parse(JSON.stringify(error.details))).toMatchObject({
      maxConcurrent: 2,
      holders: [{ hostId: "gpu-a", acquiredAt: "2026-11-28T08:00:00.000Z" }, {}],
    });
    expect(new FleetSlotsFullError(1, holders.slice(0, 1)).message).toMatch(/^all 1 fleet maintenance slot is held: gpu-a/);
  });
});
