/**
 * The p-th percentile (0–100) by linear interpolation between the closest ranks, as numpy's
 * default and `vllm bench serve` compute them, so our p95 reads like theirs; null for no values.
 */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`a percentile is between 0 and 100, got ${p}`);
  const sorted = Float64Array.from(values).sort();
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const a = sorted[low] ?? 0;
  const b = sorted[Math.ceil(rank)] ?? a;
  return a + (b - a) * (rank - low);
}
