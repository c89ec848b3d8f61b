/**
 * Streamed-request timing with vLLM's own benchmark definitions (vllm/benchmarks/serve.py):
 * TTFT from sending to the first non-empty chunk; ITL the gaps between later chunks; E2E from
 * sending to the last byte.
 */
export interface StreamTiming {
  ttftMs: number | null;
  itlMs: number[];
  e2eMs: number;
  chunks: number;
}

export function createStreamTimer(now: () => number) {
  const start = now();
  let first: number | null = null;
  let last: number | null = null;
  const itl: number[] = [];
  let chunks = 0;
  return {
    chunk(nonEmpty: boolean) {
      if (!nonEmpty) return;
      const t = now();
      chunks += 1;
      if (first === null) first = t;
      else if (last !== null) itl.push(t - last);
      last = t;
    },
    finish(): StreamTiming {
      return { ttftMs: first === null ? null : first - start, itlMs: itl, e2eMs: now() - start, chunks };
    },
  };
}

export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const low = Math.floor(rank);
  const high = Math.ceil(rank);
  const a = sorted[low] ?? 0;
  const b = sorted[high] ?? a;
  return a + (b - a) * (rank - low);
}
