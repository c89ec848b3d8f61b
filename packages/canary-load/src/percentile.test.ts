import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { percentile } from "./percentile.ts";

describe("percentile", () => {
  it("interpolates between the closest ranks, as numpy and vllm bench serve do", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([10, 20, 30, 40, 50], 95)).toBeCloseTo(48);
    expect(percentile([5], 95)).toBe(5);
    expect(percentile([3, 1, 2], 0)).toBe(1);
    expect(percentile([3, 1, 2], 100)).toBe(3);
  });

  it("is null for no values and refuses a p outside 0–100", () => {
    expect(percentile([], 50)).toBeNull();
    expect(() => percentile([1], 101)).toThrow(/between 0 and 100/);
    expect(() => percentile([1], Number.NaN)).toThrow(/between 0 and 100/);
  });

  it("lies between the smallest and largest value and grows with p, numbers sorted numerically not as text", () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 1e6, noNaN: true }), { minLength: 1 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (xs, p) => {
          const v = percentile(xs, p) as number;
          expect(v).toBeGreaterThanOrEqual(Math.min(...xs));
          expect(v).toBeLessThanOrEqual(Math.max(...xs));
          expect(percentile(xs, Math.min(100, p + 1)) as number).toBeGreaterThanOrEqual(v);
        },
      ),
    );
    expect(percentile([9, 10, 100], 50)).toBe(10);
  });
});
