import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

describe("gpu-canary window", () => {
  it("answers for the default settings in text", async () => {
    const home = await testdir();
    const { code, stdout, stderr } = await cli(["window"], { KLR_HOME: home });
    expect(code).toBe(0);
    expect(stderr).toBe("");
    expect(stdout).toBe(
      [
        "Maintenance window 03:00-07:00 America/New_York: closed",
        "Opens:  2026-11-29 03:00 EST (2026-11-29T08:00:00Z), in 18h20m",
        "Closes: 2026-11-29 07:00 EST (2026-11-29T12:00:00Z)",
        "Night:  2026-11-28 (the last window's, until the next opens; `gpu-canary budget` shows its downtime)",
        "",
      ].join("\n"),
    );
  });

  it("answers in JSON with the contract's keys", async () => {
    const home = await testdir();
    const result = await cli(["window", "--json"], { KLR_HOME: home }, "2026-11-28T09:15:00Z");
    expect(result.json()).toEqual({
      open: true,
      opens_at: "2026-11-28T08:00:00Z",
      closes_at: "2026-11-28T12:00:00Z",
      timezone: "America/New_York",
      window: "03:00-07:00",
      at: "2026-11-28T09:15:00Z",
      seconds_left: 9900,
      seconds_until_open: 0,
      night: "20261128",
    });
  });

  it("handles a window that wraps midnight and another time zone", async () => {
    const home = await testdir();
    const env = { KLR_HOME: home, KLR_GPU_MAINTENANCE_WINDOW: "23:00-02:00", KLR_GPU_MAINTENANCE_TZ: "Europe/Berlin" };
    const result = await cli(["window", "--json", "--at", "2026-11-29T00:30"], env);
    expect(result.json()).toMatchObject({
      open: true,
      opens_at: "2026-11-28T22:00:00Z",
      closes_at: "2026-11-29T01:00:00Z",
      night: "20261128",
    });
    const text = await cli(["window", "--at", "2026-11-29T00:30"], env);
    expect(text.stdout).toContain("OPEN");
    expect(text.stdout).toContain("1h30m left");
  });

  it("gives four real hours on the 2026 DST dates in New York", async () => {
    const home = await testdir();
    for (const at of ["2026-03-08T04:00", "2026-11-01T04:00"]) {
      const w = (await cli(["window", "--json", "--at", at], { KLR_HOME: home })).json();
      expect(Date.parse(String(w.closes_at)) - Date.parse(String(w.opens_at))).toBe(4 * 3600_000);
      expect(w.open).toBe(true);
    }
  });

  it("refuses a bad --at with exit 2 and a JSON error", async () => {
    const home = await testdir();
    const result = await cli(["window", "--json", "--at", "tomorrow"], { KLR_HOME: home });
    expect(result.code).toBe(2);
    expect(result.json().error).toMatchObject({ code: "USAGE", message: expect.stringContaining("--at") });
  });

  it("refuses an --at at the edge of what a date holds (exit 2), not a crash", async () => {
    const home = await testdir();
    for (const at of ["+275760-09-13T00:00:00Z", "-271821-04-20T00:00:00Z", "0001-01-01T00:00:00Z"]) {
      const result = await cli(["window", "--json", "--at", at], { KLR_HOME: home });
      expect(result.code).toBe(2);
      expect(result.json().error).toMatchObject({ code: "USAGE", message: expect.stringContaining("outside the years 1970 to 9999") });
    }
  });
});
