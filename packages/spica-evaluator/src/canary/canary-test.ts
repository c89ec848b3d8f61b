import { messageOf } from "@gpu-canary/errors";
import { type VllmClient, percentile } from "@gpu-canary/vllm-client";

export interface LatencySamples {
  ttftMs: number[];
  itlMs: number[];
  e2eMs: number[];
  errors: string[];
  /** why the canary died (its own last words), when it did: a failure, not a missing answer */
  death: string | null;
  /** the canary's timeout ran out before the test was done */
  timedOut: boolean;
}

export interface CanaryTestOptions {
  /** timed completions after the warm-up (KLR_CANARY_SAMPLES) */
  samples: number;
  /** the test must end by then (epoch ms): the canary's timeout */
  deadline: number;
  signal?: AbortSignal;
  onProgress?: (line: string) => void;
  /** why the canary died, once it did (its exit), to stop waiting early */
  died?: () => string | null;
}

const PROMPT = "Write one sentence about the sea.";
const MAX_TOKENS = 16;

/**
 * The evidence (invariant 2): health, one warm-up completion, then timed streamed completions.
 * Health alone proves nothing; errors are kept, and the caller judges too few samples inconclusive.
 */
export async function timedCompletions(client: VllmClient, options: CanaryTestOptions): Promise<LatencySamples> {
  const out: LatencySamples = { ttftMs: [], itlMs: [], e2eMs: [], errors: [], death: null, timedOut: false };
  const left = () => options.deadline - Date.now();
  const request = (prompt: string) => ({
    prompt,
    maxTokens: MAX_TOKENS,
    timeoutMs: Math.max(1, Math.min(left(), 20_000)),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  // Health, polled until the deadline or until the canary dies.
  for (;;) {
    options.signal?.throwIfAborted();
    out.death = options.died?.() ?? null;
    if (out.death) return out;
    if (left() <= 0) {
      out.errors.push("the canary was not healthy before its timeout");
      out.timedOut = true;
      return out;
    }
    try {
      await client.waitUntilHealthy({ deadlineMs: Math.min(left(), 500), ...(options.signal ? { signal: options.signal } : {}) });
      break;
    } catch (error) {
      options.signal?.throwIfAborted();
      if (error instanceof Error && "code" in error && error.code === "VLLM_ENGINE_DEAD") {
        out.errors.push(error.message);
        return out;
      }
    }
  }
  options.onProgress?.("canary healthy; warm-up completion");
  try {
    await client.completion(request("Hello"));
  } catch (error) {
    options.signal?.throwIfAborted();
    out.errors.push(`warm-up: ${messageOf(error)}`);
    return out;
  }
  for (let i = 0; i < options.samples; i += 1) {
    options.signal?.throwIfAborted();
    if (left() <= 0) {
      out.errors.push(`timed out after ${i} of ${options.samples} completions`);
      out.timedOut = true;
      break;
    }
    try {
      const result = await client.streamCompletion(request(`${PROMPT} (${i + 1})`));
      if (result.ttftMs === null) {
        out.errors.push(`completion ${i + 1} streamed no tokens`);
        continue;
      }
      out.ttftMs.push(result.ttftMs);
      out.itlMs.push(...result.itlMs);
      out.e2eMs.push(result.e2eMs);
      options.onProgress?.(
        `completion ${i + 1}/${options.samples}: TTFT ${result.ttftMs.toFixed(0)} ms, ${result.e2eMs.toFixed(0)} ms total`,
      );
    } catch (error) {
      options.signal?.throwIfAborted();
      out.errors.push(`completion ${i + 1}: ${messageOf(error)}`);
      out.death = options.died?.() ?? null;
      if (out.death) break;
    }
  }
  return out;
}

/**
 * Production's own latency, for the relative limit; null when it does not answer. Requests name
 * the model the client found served (vllm-client's modelOf), as vLLM before 0.8 requires.
 */
export async function measureBaseline(
  client: VllmClient,
  samples: number,
): Promise<{ ttftP50Ms: number | null; e2eP50Ms: number | null } | null> {
  const result = await timedCompletions(client, { samples, deadline: Date.now() + 15_000 }).catch(() => null);
  if (!result || result.e2eMs.length === 0) return null;
  return { ttftP50Ms: percentile(result.ttftMs, 50), e2eP50Ms: percentile(result.e2eMs, 50) };
}

export interface Verdict {
  status: "passed" | "failed" | "inconclusive";
  reason: string;
}

export interface VerdictLimits {
  samplesWanted: number;
  ttftP95Ms: number;
  maxSlowdown: number;
}

/** Judge the evidence: enough real samples, TTFT p95 under the absolute limit, not slower than production by more than the ratio. */
export function judge(samples: LatencySamples, baseline: { e2eP50Ms: number | null } | null, limits: VerdictLimits): Verdict {
  const n = samples.e2eMs.length;
  if (n < limits.samplesWanted) {
    const why = samples.errors.length > 0 ? `: ${samples.errors.slice(-2).join("; ")}` : "";
    return { status: "inconclusive", reason: `only ${n} of ${limits.samplesWanted} test completions succeeded${why}` };
  }
  const ttftP95 = percentile(samples.ttftMs, 95) ?? Infinity;
  const e2eP50 = percentile(samples.e2eMs, 50) ?? Infinity;
  if (ttftP95 > limits.ttftP95Ms) {
    return {
      status: "failed",
      reason: `TTFT p95 ${ttftP95.toFixed(0)} ms is above the limit ${limits.ttftP95Ms} ms (KLR_CANARY_TTFT_P95_MS)`,
    };
  }
  if (baseline?.e2eP50Ms && e2eP50 > baseline.e2eP50Ms * limits.maxSlowdown) {
    return {
      status: "failed",
      reason: `median latency ${e2eP50.toFixed(0)} ms is ${(e2eP50 / baseline.e2eP50Ms).toFixed(2)}× production's ${baseline.e2eP50Ms.toFixed(0)} ms, above ${limits.maxSlowdown}× (KLR_CANARY_MAX_SLOWDOWN)`,
    };
  }
  return {
    status: "passed",
    reason: `${n} streamed completions: TTFT p95 ${ttftP95.toFixed(0)} ms (limit ${limits.ttftP95Ms}), median ${e2eP50.toFixed(0)} ms${
      baseline?.e2eP50Ms ? ` (production ${baseline.e2eP50Ms.toFixed(0)} ms)` : ""
    }`,
  };
}
