import type { RequestShape } from "@gpu-canary/canary-load";
import { type Sample, histogramQuantile, maxOf, sumOf } from "@gpu-canary/vllm-client";

/** What production's own /metrics say of its traffic: the canary's load is shaped after it. */
export interface ProductionShape {
  /** the highest vllm:num_requests_running seen (null: the gauge was absent) */
  concurrency: number | null;
  /** when that highest concurrency was seen */
  concurrencySeenAt: string;
  promptTokensP50: number | null;
  promptTokensP95: number | null;
  outputTokensP50: number | null;
  outputTokensP95: number | null;
  /** when production's /metrics showed it (ISO time) */
  seenAt: string;
}

/** The kinds of intent whose failure the load must reproduce (tuning's IntentKind, by name). */
export type LoadIntentKind = "oom_kv_cache" | "oom_runtime" | "oom_max_model_len" | (string & {});

export interface LoadPlan {
  concurrency: number;
  promptTokens: number;
  outputTokens: number;
  durationSeconds: number;
  /** the first wave spread over this many seconds: production's requests arrive one by one, and a burst's queueing is not its latency */
  rampUpSeconds: number;
  /** requests sent once each beside the steady load, for the intent's failure */
  extra: (RequestShape & { why: string })[];
  /** where each number came from, for the reason and the audit */
  basis: string;
}

/** Used when neither the settings nor production say: a small load that still streams. */
export const FALLBACK_SHAPE = { concurrency: 2, promptTokens: 512, outputTokens: 128 } as const;
/** vLLM refuses prompt + max_tokens past max_model_len, and the calibration is close, not exact. */
const MAX_MODEL_LEN_MARGIN = 0.97;
/**
 * The share of the predicted KV cache the intent's long requests fill, with the steady ones: a
 * cache as large as predicted holds it without preempting; a smaller one (the prediction wrong,
 * the memory taken at runtime) preempts or dies.
 */
const FILL_SHARE = 0.9;
/** At most this many long requests to fill a KV cache: a canary's load, not a flood. */
const MAX_FILL_REQUESTS = 32;
const MAX_MODEL_LEN_OUTPUT = 16;

const positive = (v: number | null): number | null => (v !== null && Number.isFinite(v) && v > 0 ? v : null);

/** Fewer requests in a length histogram say nothing of production's traffic. */
export const MIN_SHAPE_REQUESTS = 20;

function meanOf(samples: readonly Sample[], name: string): number | null {
  const count = sumOf(samples, `${name}_count`) ?? 0;
  return count > 0 ? (sumOf(samples, `${name}_sum`) ?? 0) / count : null;
}

function observations(samples: readonly Sample[], name: string): number {
  return samples
    .filter((s) => s.name === `${name}_bucket` && s.labels.le === "+Inf" && Number.isFinite(s.value))
    .reduce((sum, s) => sum + s.value, 0);
}

/**
 * Production's shape from its /metrics: the running gauge now and the p50/p95 of its request
 * length histograms (cumulative since production started; lengths only once they counted
 * MIN_SHAPE_REQUESTS). Null when none of them says anything, as after a restart.
 */
export function shapeFromMetrics(samples: readonly Sample[], seenAt: Date): ProductionShape | null {
  const q = (name: string, quantile: number) => {
    // A production just restarted has counted little but our own readiness checks (one-token prompts): not its traffic.
    if (observations(samples, name) < MIN_SHAPE_REQUESTS) return null;
    const v = positive(histogramQuantile(samples, name, quantile));
    if (v === null) return null;
    // Interpolated inside vLLM's 1-2-5 buckets, a p95 can fall well below production's real lengths (all
    // 2,000-token prompts read 1,950): never below the mean, which the histogram's _sum and _count give exactly.
    return Math.round(quantile >= 0.95 ? Math.max(v, meanOf(samples, name) ?? 0) : v);
  };
  const shape: ProductionShape = {
    concurrency: maxOf(samples, "vllm:num_requests_running"),
    concurrencySeenAt: seenAt.toISOString(),
    promptTokensP50: q("vllm:request_prompt_tokens", 0.5),
    promptTokensP95: q("vllm:request_prompt_tokens", 0.95),
    outputTokensP50: q("vllm:request_generation_tokens", 0.5),
    outputTokensP95: q("vllm:request_generation_tokens", 0.95),
    seenAt: seenAt.toISOString(),
  };
  const anything = [shape.promptTokensP95, shape.outputTokensP95, positive(shape.concurrency)].some((v) => v !== null);
  return anything ? shape : null;
}

/** A highest concurrency older than this is forgotten: traffic changes, and one old burst must not size every canary. */
export const SHAPE_MEMORY_DAYS = 7;

/**
 * The shape kept for a production that is down: the histograms of the newer reading where it has
 * them, and the higher concurrency of the two (the running gauge is a moment; the highest seen
 * in the last SHAPE_MEMORY_DAYS is what the canary must carry).
 */
export function mergeShapes(before: ProductionShape | null, now: ProductionShape | null): ProductionShape | null {
  if (!before) return now;
  if (!now) return before;
  const pick = <K extends keyof ProductionShape>(key: K) => now[key] ?? before[key];
  const recent = Date.parse(now.seenAt) - Date.parse(before.concurrencySeenAt) <= SHAPE_MEMORY_DAYS * 86_400_000;
  const keepEarlier = recent && before.concurrency !== null && (now.concurrency === null || before.concurrency > now.concurrency);
  return {
    concurrency: keepEarlier ? before.concurrency : now.concurrency,
    concurrencySeenAt: keepEarlier ? before.concurrencySeenAt : now.concurrencySeenAt,
    promptTokensP50: pick("promptTokensP50"),
    promptTokensP95: pick("promptTokensP95"),
    outputTokensP50: pick("outputTokensP50"),
    outputTokensP95: pick("outputTokensP95"),
    // when the lengths were seen: they are what a canary run while production is down is shaped by
    seenAt: now.promptTokensP95 !== null ? now.seenAt : before.seenAt,
  };
}

export interface PlanInput {
  settings: {
    canaryConcurrency?: number | undefined;
    canaryPromptTokens?: number | undefined;
    canaryOutputTokens?: number | undefined;
    canaryLoadSeconds: number;
  };
  /** production's shape, and where it came from ("production's /metrics now", "…last seen at …") */
  production: { shape: ProductionShape; source: string } | null;
  intentKind: LoadIntentKind | null;
  /** the candidate's KV cache in tokens, as the memory model predicts it */
  kvTokens: number | null;
  /** the canary's max_model_len (KLR_MAX_MODEL_LEN or /v1/models) */
  maxModelLen: number | null;
}

/**
 * The canary's load: the settings where set, else production's shape (the highest concurrency
 * seen, at least 2; the p95 lengths — a candidate must hold production's long requests, not only
 * its median ones), else a small fallback. Then what the intent's failure needs: one request at
 * max_model_len for `oom_max_model_len`; for `oom_kv_cache` and `oom_runtime`, long requests
 * beside the steady ones until FILL_SHARE of the predicted KV cache is taken.
 */
export function planLoad(input: PlanInput): LoadPlan {
  const { settings, production } = input;
  const parts: string[] = [];
  const chosen: { what: string; value: number; from: string }[] = [];
  const choose = (setting: number | undefined, settingName: string, fromProduction: number | null, fallback: number, what: string) => {
    const pick =
      setting !== undefined
        ? { value: setting, from: settingName }
        : fromProduction !== null && production
          ? { value: fromProduction, from: production.source }
          : { value: fallback, from: "default: production showed none" };
    chosen.push({ what, ...pick });
    return pick.value;
  };
  const seenConcurrency = production?.shape.concurrency;
  const concurrency = choose(
    settings.canaryConcurrency,
    "KLR_CANARY_CONCURRENCY",
    seenConcurrency === null || seenConcurrency === undefined ? null : Math.max(2, Math.round(seenConcurrency)),
    FALLBACK_SHAPE.concurrency,
    "concurrency",
  );
  let promptTokens = choose(
    settings.canaryPromptTokens,
    "KLR_CANARY_PROMPT_TOKENS",
    production?.shape.promptTokensP95 ?? null,
    FALLBACK_SHAPE.promptTokens,
    "prompt tokens",
  );
  let outputTokens = choose(
    settings.canaryOutputTokens,
    "KLR_CANARY_OUTPUT_TOKENS",
    production?.shape.outputTokensP95 ?? null,
    FALLBACK_SHAPE.outputTokens,
    "output tokens",
  );
  // "concurrency 8, prompt tokens 1950, output tokens 485 (production's /metrics)": each source named once, after its numbers.
  for (const from of new Set(chosen.map((c) => c.from)))
    parts.push(
      `${chosen
        .filter((c) => c.from === from)
        .map((c) => `${c.what} ${c.value}`)
        .join(", ")} (${from})`,
    );
  const limit = input.maxModelLen === null ? null : Math.floor(input.maxModelLen * MAX_MODEL_LEN_MARGIN);
  if (limit !== null && promptTokens + outputTokens > limit) {
    // vLLM would refuse every request: production's p95 cannot pass its own max_model_len, so the settings say more than vLLM takes.
    outputTokens = Math.max(1, Math.min(outputTokens, Math.floor(limit / 4)));
    promptTokens = Math.max(1, limit - outputTokens);
    parts.push(`cut to ${promptTokens} + ${outputTokens} tokens to fit max_model_len ${input.maxModelLen}`);
  }
  const extra: LoadPlan["extra"] = [];
  if (input.intentKind === "oom_max_model_len") {
    if (limit === null) parts.push("no request at max_model_len: neither KLR_MAX_MODEL_LEN nor the canary's /v1/models says it");
    else
      extra.push({
        promptTokens: Math.max(1, limit - MAX_MODEL_LEN_OUTPUT),
        outputTokens: MAX_MODEL_LEN_OUTPUT,
        why: `one request at max_model_len ${input.maxModelLen} (${Math.round(MAX_MODEL_LEN_MARGIN * 100)} %, as the calibration is close, not exact)`,
      });
  } else if (input.intentKind === "oom_kv_cache" || input.intentKind === "oom_runtime") {
    extra.push(...fillRequests(input.kvTokens, concurrency * (promptTokens + outputTokens), promptTokens, outputTokens, limit));
    if (input.kvTokens === null) parts.push("no requests to fill the KV cache: the memory model did not size it");
  }
  return {
    concurrency,
    promptTokens,
    outputTokens,
    durationSeconds: settings.canaryLoadSeconds,
    rampUpSeconds: settings.canaryLoadSeconds / 2,
    extra,
    basis: parts.join(", "),
  };
}

/** Long requests that, beside the steady ones, take FILL_SHARE of the predicted KV cache; the reason says when they cannot. */
function fillRequests(
  kvTokens: number | null,
  steadyTokens: number,
  promptTokens: number,
  outputTokens: number,
  limit: number | null,
): LoadPlan["extra"] {
  const target = kvTokens === null ? null : Math.floor(kvTokens * FILL_SHARE);
  if (target === null || target <= steadyTokens) return [];
  const missing = target - steadyTokens;
  // As long as production's long requests; longer, up to max_model_len, when that many would be a flood —
  // never longer while max_model_len is unknown (vLLM would refuse them).
  const wanted = Math.max(promptTokens + outputTokens, Math.ceil(missing / MAX_FILL_REQUESTS));
  const each = limit === null ? promptTokens + outputTokens : Math.min(wanted, limit);
  const output = Math.min(outputTokens, Math.max(1, each - 1));
  const count = Math.min(MAX_FILL_REQUESTS, Math.ceil(missing / each));
  const reached = steadyTokens + count * each;
  const share = Math.round(FILL_SHARE * 100);
  const short =
    reached < target
      ? ` (they reach ${Math.floor((100 * reached) / (kvTokens ?? 1))} %: at most ${MAX_FILL_REQUESTS} of at most ${
          limit === null ? "production's length, max_model_len being unknown" : `max_model_len's ${limit} tokens`
        })`
      : "";
  return Array.from({ length: count }, () => ({
    promptTokens: Math.max(1, each - output),
    outputTokens: output,
    why: `${count} long requests to fill ${share} % of the predicted KV cache of ${kvTokens} tokens${short}`,
  }));
}
