import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Fingerprint } from "./promotion-fingerprint.ts";
import {
  type RankedEvidence,
  compareEvidence,
  decidingRule,
  promotionEvidence,
  provenHere,
  rankByEvidence,
  rankPromotions,
  rankingJson,
  whyBefore,
} from "./promotion-rank.ts";

const base: RankedEvidence = {
  runId: "r-a",
  at: "2026-12-07T02:10:00.000Z",
  preemptions: 0,
  kvCacheUsagePeak: 0.5,
  ttftP95Ms: 200,
  itlP95Ms: 20,
};
const ev = (over: Partial<RankedEvidence>): RankedEvidence => ({ ...base, ...over });

describe("compareEvidence: each rule decides a case", () => {
  // a is the better in each row, and only the named rule tells a from b (the rules before it are equal).
  const rows: { rule: string; a: Partial<RankedEvidence>; b: Partial<RankedEvidence>; says: string }[] = [
    {
      rule: "preemptions",
      a: { preemptions: 0, kvCacheUsagePeak: 0.99 },
      b: { preemptions: 2, kvCacheUsagePeak: 0.1 },
      says: "fewer preemptions (0 vs 2)",
    },
    { rule: "preemptions", a: { preemptions: 5 }, b: { preemptions: null }, says: "fewer preemptions (5 vs unreported)" },
    {
      rule: "kv_cache_usage_peak",
      a: { kvCacheUsagePeak: 0.6, ttftP95Ms: 900 },
      b: { kvCacheUsagePeak: 0.9, ttftP95Ms: 100 },
      says: "a lower peak KV-cache usage (60 % vs 90 %)",
    },
    {
      rule: "kv_cache_usage_peak",
      a: { kvCacheUsagePeak: 0.99 },
      b: { kvCacheUsagePeak: null },
      says: "a lower peak KV-cache usage (99 % vs unreported)",
    },
    {
      rule: "ttft_p95_ms",
      a: { ttftP95Ms: 150, itlP95Ms: 90 },
      b: { ttftP95Ms: 250, itlP95Ms: 10 },
      says: "a lower TTFT p95 (150 ms vs 250 ms)",
    },
    { rule: "ttft_p95_ms", a: { ttftP95Ms: 150 }, b: { ttftP95Ms: null }, says: "a lower TTFT p95 (150 ms vs unreported)" },
    {
      rule: "itl_p95_ms",
      a: { itlP95Ms: 15, at: "2026-12-01T00:00:00.000Z" },
      b: { itlP95Ms: 25, at: "2026-12-07T00:00:00.000Z" },
      says: "a lower ITL p95 (15 ms vs 25 ms)",
    },
    { rule: "itl_p95_ms", a: { itlP95Ms: 15 }, b: { itlP95Ms: null }, says: "a lower ITL p95 (15 ms vs unreported)" },
    {
      rule: "newer",
      a: { at: "2026-12-08T02:10:00.000Z", runId: "r-z" },
      b: { at: "2026-12-07T02:10:00.000Z", runId: "r-a" },
      says: "the same evidence, newer (2026-12-08T02:10:00.000Z vs 2026-12-07T02:10:00.000Z)",
    },
    {
      rule: "newer",
      a: { at: "2026-12-01T00:00:00.000Z", runId: "r-z" },
      b: { at: "not a time", runId: "r-a" },
      says: "the same evidence, newer (2026-12-01T00:00:00.000Z vs not a time)",
    },
    { rule: "run_id", a: { runId: "r-a" }, b: { runId: "r-b" }, says: "the same evidence and time, by run id (r-a vs r-b)" },
  ];
  it.each(rows)("$rule: $says", ({ rule, a, b, says }) => {
    const [x, y] = [ev(a), ev(b)];
    expect(decidingRule(x, y)).toEqual({ rule, order: -1 });
    expect(decidingRule(y, x)).toEqual({ rule, order: 1 });
    expect(compareEvidence(x, y)).toBeLessThan(0);
    expect(compareEvidence(y, x)).toBeGreaterThan(0);
    expect(rankByEvidence([y, x], (e) => e)).toEqual([x, y]);
    expect(whyBefore(x, y)).toBe(says);
  });

  it("equal evidence is no decision", () => {
    expect(decidingRule(base, { ...base })).toBeNull();
    expect(compareEvidence(base, { ...base })).toBe(0);
    expect(whyBefore(base, { ...base })).toBeNull();
  });
});

const num = (max: number) => fc.option(fc.integer({ min: 0, max }), { nil: null });
const evidence = fc.record({
  runId: fc.constantFrom("r-a", "r-b", "r-c"),
  at: fc.constantFrom("2026-12-06T02:00:00.000Z", "2026-12-07T02:00:00.000Z", "garbage", "junk"),
  preemptions: num(2),
  kvCacheUsagePeak: fc.option(fc.constantFrom(0.3, 0.6, 0.9), { nil: null }),
  ttftP95Ms: num(2),
  itlP95Ms: num(2),
});

describe("compareEvidence is a total order", () => {
  it("antisymmetric, transitive, total, and 0 only for equal evidence", () => {
    fc.assert(
      fc.property(evidence, evidence, evidence, (a, b, c) => {
        expect(Math.sign(compareEvidence(a, b))).toBe(-Math.sign(compareEvidence(b, a)) || 0);
        expect(compareEvidence(a, a)).toBe(0);
        if (compareEvidence(a, b) <= 0 && compareEvidence(b, c) <= 0) expect(compareEvidence(a, c)).toBeLessThanOrEqual(0);
        if (compareEvidence(a, b) === 0) expect(a).toEqual(b);
      }),
      { numRuns: 2000 },
    );
  });

  it("ranks the same whatever the input's order, and keeps equal items in their order (stable)", () => {
    fc.assert(
      fc.property(fc.array(evidence, { maxLength: 12 }), (items) => {
        const tagged = items.map((e, i) => ({ e, i }));
        const ranked = rankByEvidence(tagged, (t) => t.e);
        const reversed = rankByEvidence([...tagged].reverse(), (t) => t.e);
        expect(ranked.map((t) => t.e)).toEqual(reversed.map((t) => t.e));
        for (let k = 1; k < ranked.length; k++) {
          const [prev, cur] = [ranked[k - 1], ranked[k]];
          if (!prev || !cur) continue;
          expect(compareEvidence(prev.e, cur.e)).toBeLessThanOrEqual(0);
          if (compareEvidence(prev.e, cur.e) === 0) expect(prev.i).toBeLessThan(cur.i);
        }
        expect(tagged.map((t) => t.i)).toEqual(items.map((_, i) => i));
      }),
    );
  });
});

describe("promotions' evidence", () => {
  it("reads evidence.measured as writePromotion writes it; anything missing or not a number is unreported", () => {
    const p = {
      run_id: "r-1",
      created_at: "2026-12-07T02:10:00.000Z",
      evidence: { predicted: null, measured: { preemptions: 0, kv_cache_usage_peak: 0.71, ttft_p95_ms: 180, itl_p95_ms: "fast" } },
    };
    expect(promotionEvidence(p)).toEqual({
      runId: "r-1",
      at: "2026-12-07T02:10:00.000Z",
      preemptions: 0,
      kvCacheUsagePeak: 0.71,
      ttftP95Ms: 180,
      itlP95Ms: null,
    });
    expect(promotionEvidence({ run_id: "r-old", created_at: "x" })).toMatchObject({ preemptions: null, kvCacheUsagePeak: null });
    expect(promotionEvidence({ run_id: "r-odd", created_at: "x", evidence: { measured: [1] } })).toMatchObject({ preemptions: null });
  });

  it("a promotion from before the load test ranks after one with its numbers, however newer", () => {
    const old = { run_id: "r-new-but-bare", created_at: "2026-12-09T00:00:00.000Z", evidence: { measured: null } };
    const measured = {
      run_id: "r-loaded",
      created_at: "2026-12-01T00:00:00.000Z",
      evidence: { measured: { preemptions: 3, kv_cache_usage_peak: 1, ttft_p95_ms: 5000, itl_p95_ms: 500 } },
    };
    expect(rankPromotions([old, measured]).map((p) => p.run_id)).toEqual(["r-loaded", "r-new-but-bare"]);
  });

  it("rankingJson names the rule that put each entry before the next", () => {
    const a = ev({ runId: "r-a", preemptions: 0 });
    const b = ev({ runId: "r-b", preemptions: 1 });
    const c = ev({ runId: "r-c", preemptions: 1, kvCacheUsagePeak: 0.9 });
    expect(rankingJson([a, b, c]).map((j) => [j.run_id, j.before_next_by])).toEqual([
      ["r-a", "preemptions"],
      ["r-b", "kv_cache_usage_peak"],
      ["r-c", null],
    ]);
  });
});

describe("provenHere", () => {
  const host: Fingerprint = {
    vllm_version: "0.11.0",
    gpu_name: "NVIDIA H100 80GB HBM3",
    gpu_total_mib: 81047,
    model_config_sha256: null,
    whisper_size: "small",
    kv_cache_dtype: "auto",
    tuned_flags: {},
  };
  it("follows apply's rule: a differing fingerprint is not proven here, a missing one is not known to differ", () => {
    expect(provenHere({ fingerprint: host }, host)).toBe(true);
    expect(provenHere({ fingerprint: { ...host, vllm_version: null } }, host)).toBe(true);
    expect(provenHere({ fingerprint: { ...host, vllm_version: "0.10.2" } }, host)).toBe(false);
    expect(provenHere({}, host)).toBe(true);
  });
});
