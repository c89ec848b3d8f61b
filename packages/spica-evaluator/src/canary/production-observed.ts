import { type Sample, histogramQuantile, histogramQuantileBucket, sumOf } from "@gpu-canary/vllm-client";
import { readVllmSeen, rememberVllmSeen } from "../predictive/vllm-seen.ts";
import type { VllmSeen } from "../predictive/vllm-seen.ts";
import { type ProductionShape, mergeShapes, shapeFromMetrics } from "./load-shape.ts";

/** TTFT and inter-token latency as vLLM's own histograms count them (server side, from a request's arrival). */
export interface ServerLatency {
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  itlP50Ms: number | null;
  itlP95Ms: number | null;
  /** the requests the TTFT histogram counted */
  requests: number;
  /** the lower bounds of the buckets the p95s fell in: the least each p95 can be */
  ttftP95FloorMs: number | null;
  itlP95FloorMs: number | null;
}

/** Production's own latency, from its /metrics histograms: the canary is compared with it, and production gets no extra load. */
export interface ProductionBaseline extends ServerLatency {
  source: string;
}

const TTFT = "vllm:time_to_first_token_seconds";
/** Inter-token latency: vLLM ≥ 0.10's name first, then the older one. */
const ITL_NAMES = ["vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"] as const;
/** The histograms latencyOf reads, for a caller that takes their difference over a load. */
export const LATENCY_HISTOGRAMS = [TTFT, ...ITL_NAMES] as const;

const ms = (seconds: number | null) => (seconds === null || !Number.isFinite(seconds) ? null : Math.round(seconds * 10_000) / 10);

/** Null when the histograms counted no request (a fresh start, or a load that finished none). */
export function latencyOf(samples: readonly Sample[]): ServerLatency | null {
  const requests = sumOf(samples, `${TTFT}_count`) ?? 0;
  if (requests <= 0) return null;
  const itl = ITL_NAMES.find((name) => histogramQuantile(samples, name, 0.5) !== null);
  const ttft95 = histogramQuantileBucket(samples, TTFT, 0.95);
  const itl95 = itl ? histogramQuantileBucket(samples, itl, 0.95) : null;
  return {
    ttftP50Ms: ms(histogramQuantile(samples, TTFT, 0.5)),
    ttftP95Ms: ms(ttft95?.value ?? null),
    itlP50Ms: itl ? ms(histogramQuantile(samples, itl, 0.5)) : null,
    itlP95Ms: ms(itl95?.value ?? null),
    requests: Math.round(requests),
    ttftP95FloorMs: ms(ttft95?.lower ?? null),
    itlP95FloorMs: ms(itl95?.lower ?? null),
  };
}

export function baselineFromMetrics(samples: readonly Sample[]): ProductionBaseline | null {
  const latency = latencyOf(samples);
  return latency && { ...latency, source: `production's /metrics histograms (${latency.requests} requests since it started)` };
}

export interface ProductionObserved {
  baseline: ProductionBaseline | null;
  /** the load's shape and where it came from; null when production never showed one */
  shape: { shape: ProductionShape; source: string } | null;
}

function shapeOfSeen(seen: VllmSeen | null): ProductionShape | null {
  const s = seen?.load_shape;
  return s
    ? {
        concurrency: s.concurrency,
        concurrencySeenAt: s.concurrency_seen_at ?? s.seen_at,
        promptTokensP50: s.prompt_tokens_p50,
        promptTokensP95: s.prompt_tokens_p95,
        outputTokensP50: s.output_tokens_p50,
        outputTokensP95: s.output_tokens_p95,
        seenAt: s.seen_at,
      }
    : null;
}

/**
 * Read production's /metrics once, before anything stops it: its latency baseline, and its
 * traffic's shape — kept in vllm_seen.json (the highest concurrency of the two readings), so a
 * canary run while production is down after its own OOM is still shaped like its traffic.
 */
export async function observeProduction(deps: {
  metrics: () => Promise<Sample[]>;
  vllmSeenPath: string;
  now: Date;
}): Promise<ProductionObserved> {
  const saved = shapeOfSeen(await readVllmSeen(deps.vllmSeenPath));
  let samples: Sample[];
  try {
    samples = await deps.metrics();
  } catch {
    return {
      baseline: null,
      shape: saved && {
        shape: saved,
        source: `production's /metrics as last seen at ${saved.seenAt} (vllm_seen.json): production does not answer now`,
      },
    };
  }
  const now = shapeFromMetrics(samples, deps.now);
  const merged = mergeShapes(saved, now);
  if (now && merged) {
    await rememberVllmSeen(deps.vllmSeenPath, {
      seen_at: deps.now.toISOString(),
      load_shape: {
        concurrency: merged.concurrency,
        concurrency_seen_at: merged.concurrencySeenAt,
        prompt_tokens_p50: merged.promptTokensP50,
        prompt_tokens_p95: merged.promptTokensP95,
        output_tokens_p50: merged.outputTokensP50,
        output_tokens_p95: merged.outputTokensP95,
        seen_at: merged.seenAt,
      },
    });
  }
  const lengthsNow = now !== null && now.promptTokensP95 !== null;
  const source =
    lengthsNow || saved === null
      ? "production's /metrics"
      : `production's /metrics as last seen at ${saved.seenAt} (vllm_seen.json): it has counted too few requests since it started`;
  return { baseline: baselineFromMetrics(samples), shape: merged && { shape: merged, source } };
}
