import { parseWindowSpec } from "@gpu-canary/config";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { lastOpened, nightOf, windowAt } from "./maintenance-window.ts";
import { resolveLocal } from "./local-time.ts";

function spec(text: string) {
  const parsed = parseWindowSpec(text);
  if (!parsed.ok) throw new Error(parsed.expected);
  return parsed.value;
}

const NY = "America/New_York";
const at = (iso: string) => new Date(iso);
const hours = (a: Date, b: Date) => (b.getTime() - a.getTime()) / 3600_000;

describe("windowAt", () => {
  it("is open at 04:00 New York time inside the default 03:00-07:00 window, with the time left", () => {
    const state = windowAt(spec("03:00-07:00"), NY, at("2026-11-28T09:00:00Z"));
    expect(state).toMatchObject({ open: true, night: "20261128", secondsLeft: 3 * 3600, secondsUntilOpen: 0 });
    expect(state.opensAt.toISOString()).toBe("2026-11-28T08:00:00.000Z");
    expect(state.closesAt.toISOString()).toBe("2026-11-28T12:00:00.000Z");
  });

  it("is closed after the window and names the next opening", () => {
    const state = windowAt(spec("03:00-07:00"), NY, at("2026-11-28T13:40:00Z"));
    expect(state.open).toBe(false);
    expect(state.opensAt.toISOString()).toBe("2026-11-29T08:00:00.000Z");
    // The budget's night is still the one that opened last; the window described is the next night's.
    expect(state.night).toBe("20261128");
    expect(state.windowNight).toBe("20261129");
    expect(state.secondsUntilOpen).toBe(18.333333333333332 * 3600);
  });

  it("counts a start exactly at the opening as inside and the closing instant as outside", () => {
    const w = spec("03:00-07:00");
    expect(windowAt(w, NY, at("2026-11-28T08:00:00.000Z")).open).toBe(true);
    expect(windowAt(w, NY, at("2026-11-28T07:59:59.999Z")).open).toBe(false);
    expect(windowAt(w, NY, at("2026-11-28T11:59:59.999Z")).open).toBe(true);
    const closing = windowAt(w, NY, at("2026-11-28T12:00:00.000Z"));
    expect(closing.open).toBe(false);
    expect(closing.opensAt.toISOString()).toBe("2026-11-29T08:00:00.000Z");
  });

  it("wraps midnight: 23:00-02:00 is open at 01:00 and belongs to the night it opened", () => {
    const w = spec("23:00-02:00");
    const state = windowAt(w, NY, at("2026-11-29T06:00:00Z")); // 01:00 EST on the 29th
    expect(state).toMatchObject({ open: true, night: "20261128", secondsLeft: 3600 });
    expect(state.opensAt.toISOString()).toBe("2026-11-29T04:00:00.000Z");
    expect(windowAt(w, NY, at("2026-11-29T03:59:00Z")).open).toBe(false);
  });

  it("works in other zones", () => {
    expect(windowAt(spec("03:00-07:00"), "UTC", at("2026-11-28T03:00:00Z")).open).toBe(true);
    const tokyo = windowAt(spec("03:00-07:00"), "Asia/Tokyo", at("2026-11-28T19:30:00Z")); // 04:30 JST on the 29th
    expect(tokyo).toMatchObject({ open: true, night: "20261129" });
    const kolkata = windowAt(spec("03:00-07:00"), "Asia/Kolkata", at("2026-11-27T21:30:00Z"));
    expect(kolkata.open).toBe(true);
    expect(kolkata.opensAt.toISOString()).toBe("2026-11-27T21:30:00.000Z");
  });

  it("gives 03:00-07:00 four real hours on both 2026 DST nights in New York", () => {
    const spring = windowAt(spec("03:00-07:00"), NY, at("2026-03-08T09:00:00Z"));
    expect(spring.opensAt.toISOString()).toBe("2026-03-08T07:00:00.000Z");
    expect(hours(spring.opensAt, spring.closesAt)).toBe(4);
    const fall = windowAt(spec("03:00-07:00"), NY, at("2026-11-01T09:00:00Z"));
    expect(fall.opensAt.toISOString()).toBe("2026-11-01T08:00:00.000Z");
    expect(hours(fall.opensAt, fall.closesAt)).toBe(4);
  });

  it("opens a window whose start the clock skips at the instant the clock jumps", () => {
    const state = windowAt(spec("02:30-05:00"), NY, at("2026-03-08T06:00:00Z"));
    expect(state.opensAt.toISOString()).toBe("2026-03-08T07:00:00.000Z"); // 03:00 EDT
    expect(hours(state.opensAt, state.closesAt)).toBe(2);
  });

  it("opens a window whose start the clock shows twice at its first occurrence", () => {
    const state = windowAt(spec("01:30-03:00"), NY, at("2026-11-01T04:00:00Z"));
    expect(state.opensAt.toISOString()).toBe("2026-11-01T05:30:00.000Z"); // 01:30 EDT
    expect(hours(state.opensAt, state.closesAt)).toBe(2.5);
  });

  it("resolves the DST edge cases of another hemisphere and a half-hour shift the same way", () => {
    // Lord Howe Island moves 30 minutes; 02:15 is skipped on 2026-10-04.
    expect(resolveLocal({ year: 2026, month: 10, day: 4 }, { hour: 2, minute: 15 }, "Australia/Lord_Howe").toISOString()).toBe(
      "2026-10-03T15:30:00.000Z",
    );
    // Sydney repeats 02:30 on 2026-04-05; the first occurrence is still daylight time (+11).
    expect(resolveLocal({ year: 2026, month: 4, day: 5 }, { hour: 2, minute: 30 }, "Australia/Sydney").toISOString()).toBe(
      "2026-04-04T15:30:00.000Z",
    );
  });

  it("holds open(t) exactly when opens_at <= t < closes_at, for any window, zone and instant", () => {
    const zones = [NY, "UTC", "Europe/London", "Australia/Lord_Howe", "Asia/Kolkata", "America/Santiago", "Pacific/Chatham"];
    const clock = fc.record({ h: fc.integer({ min: 0, max: 23 }), m: fc.constantFrom(0, 15, 30, 45, 59) });
    fc.assert(
      fc.property(
        clock,
        clock,
        fc.constantFrom(...zones),
        fc.date({ min: new Date("2020-01-01"), max: new Date("2032-01-01"), noInvalidDate: true }),
        (s, e, zone, t) => {
          fc.pre(s.h !== e.h || s.m !== e.m);
          const text = `${String(s.h).padStart(2, "0")}:${String(s.m).padStart(2, "0")}-${String(e.h).padStart(2, "0")}:${String(e.m).padStart(2, "0")}`;
          const w = spec(text);
          const state = windowAt(w, zone, t);
          const inside = state.opensAt.getTime() <= t.getTime() && t.getTime() < state.closesAt.getTime();
          expect(state.open).toBe(inside);
          if (!state.open) expect(state.opensAt.getTime()).toBeGreaterThan(t.getTime());
          expect(state.closesAt.getTime()).toBeGreaterThanOrEqual(state.opensAt.getTime());
          const last = lastOpened(w, zone, t);
          expect(last.opensAt.getTime()).toBeLessThanOrEqual(t.getTime());
          expect(last.night).toBe(state.night);
          expect(nightOf(w, zone, t)).toBe(state.night);
          if (state.open) expect(state.windowNight).toBe(state.night);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("nightOf", () => {
  it("names the open window's night, or else the one that opened last", () => {
    const w = spec("03:00-07:00");
    expect(nightOf(w, NY, at("2026-11-28T09:00:00Z"))).toBe("20261128");
    expect(nightOf(w, NY, at("2026-11-28T20:00:00Z"))).toBe("20261128");
    expect(nightOf(w, NY, at("2026-11-29T07:59:00Z"))).toBe("20261128");
    expect(nightOf(spec("23:00-02:00"), NY, at("2026-11-29T06:30:00Z"))).toBe("20261128");
  });
});
