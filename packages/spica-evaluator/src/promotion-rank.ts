import { type Fingerprint, fingerprintDifferences } from "./promotion-fingerprint.ts";
import type { Promotion } from "./promotions.ts";

/**
 * What a passed canary showed under production's load, as far as ranking goes (docs/architecture.md,
 * "Promotions"): null where the canary did not report the number (an older promotion, a vLLM
 * without the metric).
 */
export interface RankedEvidence {
  /** the promotion's (or result's) run id: the last tie-break, so the order never depends on the input's */
  runId: string;
  /** when the canary passed (ISO 8601): at equal evidence, the newer ranks first */
  at: string;
  preemptions: number | null;
  kvCacheUsagePeak: number | null;
  ttftP95Ms: number | null;
  itlP95Ms: number | null;
}

/** The rule that put one candidate before another, as the audit names it. */
export type RankRule = "preemptions" | "kv_cache_usage_peak" | "ttft_p95_ms" | "itl_p95_ms" | "newer" | "run_id";

const NUMBER_RULES: { rule: RankRule; of: (e: RankedEvidence) => number | null; says: string }[] = [
  { rule: "preemptions", of: (e) => e.preemptions, says: "fewer preemptions" },
  { rule: "kv_cache_usage_peak", of: (e) => e.kvCacheUsagePeak, says: "a lower peak KV-cache usage" },
  { rule: "ttft_p95_ms", of: (e) => e.ttftP95Ms, says: "a lower TTFT p95" },
  { rule: "itl_p95_ms", of: (e) => e.itlP95Ms, says: "a lower ITL p95" },
];

const finite = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const record = (v: unknown): Record<string, unknown> | null =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;

/** A promotion's evidence: its canary's `evidence.measured` (written by writePromotion), read leniently; a number that is not there is null. */
export function promotionEvidence(p: Pick<Promotion, "run_id" | "created_at"> & { evidence?: unknown }): RankedEvidence {
  const measured = record(record(p.evidence)?.measured);
  return {
    runId: p.run_id,
    at: p.created_at,
    preemptions: finite(measured?.preemptions),
    kvCacheUsagePeak: finite(measured?.kv_cache_usage_peak),
    ttftP95Ms: finite(measured?.ttft_p95_ms),
    itlP95Ms: finite(measured?.itl_p95_ms),
  };
}

/** Lower first; a missing number after a present one. */
function lowerFirst(a: number | null, b: number | null): number {
  if (a === null || b === null) return a === b ? 0 : a === null ? 1 : -1;
  return Math.sign(a - b);
}

/** Newer first; a time that does not parse after one that does. */
function newerFirst(a: string, b: string): number {
  const ta = Date.parse(a);
  const tb = Date.parse(b);
  if (Number.isNaN(ta) && Number.isNaN(tb)) return a < b ? 1 : a > b ? -1 : 0;
  if (Number.isNaN(ta) || Number.isNaN(tb)) return Number.isNaN(ta) ? 1 : -1;
  return Math.sign(tb - ta);
}

/**
 * Which rule orders `a` and `b`, and how: the first of fewer preemptions, lower peak KV-cache usage,
 * lower TTFT p95, lower ITL p95 (a missing number after a present one), the newer, the run id;
 * null when the two are equal in all of them.
 */
export function decidingRule(a: RankedEvidence, b: RankedEvidence): { rule: RankRule; order: number } | null {
  for (const { rule, of } of NUMBER_RULES) {
    const order = lowerFirst(of(a), of(b));
    if (order !== 0) return { rule, order };
  }
  const newer = newerFirst(a.at, b.at);
  if (newer !== 0) return { rule: "newer", order: newer };
  const byId = a.runId < b.runId ? -1 : a.runId > b.runId ? 1 : 0;
  return byId !== 0 ? { rule: "run_id", order: byId } : null;
}

/** The comparator of canary evidence (negative: `a` is the better). A total order: sort with it. */
export function compareEvidence(a: RankedEvidence, b: RankedEvidence): number {
  return decidingRule(a, b)?.order ?? 0;
}

/** Best first by their canaries' evidence (compareEvidence); stable, the input untouched. */
export function rankByEvidence<T>(items: readonly T[], evidenceOf: (item: T) => RankedEvidence): T[] {
  const keyed = items.map((item) => ({ item, e: evidenceOf(item) }));
  return keyed.sort((x, y) => compareEvidence(x.e, y.e)).map((k) => k.item);
}

/** Promotions best first by their canaries' evidence. */
export function rankPromotions<T extends Pick<Promotion, "run_id" | "created_at"> & { evidence?: unknown }>(promotions: readonly T[]): T[] {
  return rankByEvidence(promotions, promotionEvidence);
}

const show = (rule: RankRule, e: RankedEvidence): string => {
  const v = NUMBER_RULES.find((r) => r.rule === rule)?.of(e);
  if (v === undefined) return rule === "newer" ? e.at : e.runId;
  if (v === null) return "unreported";
  return rule === "kv_cache_usage_peak" ? `${(v * 100).toFixed(0)} %` : rule === "preemptions" ? String(v) : `${v.toFixed(0)} ms`;
};

/** Why `a` ranks before `b`, in words with both numbers ("fewer preemptions (0 vs 3)"); null when they are equal. */
export function whyBefore(a: RankedEvidence, b: RankedEvidence): string | null {
  const decided = decidingRule(a, b);
  if (!decided) return null;
  const says =
    NUMBER_RULES.find((r) => r.rule === decided.rule)?.says ??
    (decided.rule === "newer" ? "the same evidence, newer" : "the same evidence and time, by run id");
  return `${says} (${show(decided.rule, a)} vs ${show(decided.rule, b)})`;
}

/**
 * A ranking in snake_case, as audit lines carry it: each entry's numbers and the rule that put it
 * before the next (`before_next_by`; null for the last).
 */
export function rankingJson(ranked: readonly RankedEvidence[]): Record<string, unknown>[] {
  return ranked.map((e, i) => {
    const next = ranked[i + 1];
    return {
      run_id: e.runId,
      at: e.at,
      preemptions: e.preemptions,
      kv_cache_usage_peak: e.kvCacheUsagePeak,
      ttft_p95_ms: e.ttftP95Ms,
      itl_p95_ms: e.itlP95Ms,
      before_next_by: next ? (decidingRule(e, next)?.rule ?? null) : null,
    };
  });
}

/**
 * Whether a proposed promotion may be applied on the host as it is now, by apply's own rule: a
 * fingerprint that differs makes it stale; one written before fingerprints is not known to differ.
 */
export function provenHere(p: Pick<Promotion, "fingerprint">, here: Fingerprint): boolean {
  return p.fingerprint === undefined || fingerprintDifferences(p.fingerprint, here).length === 0;
}
