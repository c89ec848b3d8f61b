import { EXIT } from "@gpu-canary/errors";
import type { Candidate } from "./candidate.ts";
import { candidateJson } from "./candidate.ts";
import type { ProductionBaseline, ServerLatency } from "./canary/production-observed.ts";
import type { MemoryPrediction } from "./predictive/memory-model.ts";

export interface MeasuredLoad {
  concurrency: number;
  promptTokens: number;
  outputTokens: number;
  /** sent once each beside the steady load, for the intent's failure */
  extra: { promptTokens: number; outputTokens: number }[];
  why: string | null;
  /** where each number came from */
  basis: string;
  promptTokensSeenP50: number | null;
  outputTokensSeen: number | null;
  started: number;
  completed: number;
  failed: number;
  stopped: number;
  requestsPerSecond: number | null;
  outputTokensPerSecond: number | null;
  durationSeconds: number | null;
}

/** One line for an operator: the load the canary carried and what vLLM showed under it; null without a load. */
export function loadSummary(m: Pick<Measured, "load" | "preemptions" | "kvCacheUsagePeak"> | null): string | null {
  const load = m?.load;
  if (!m || !load) return null;
  const extra = load.extra.length > 0 ? `, with ${load.why ?? `${load.extra.length} more`}` : "";
  if (load.started === 0)
    return `${load.concurrency} in flight of ${load.promptTokens} + ${load.outputTokens} tokens${extra}: no request was sent`;
  const rate = load.outputTokensPerSecond === null ? "" : `, ${load.outputTokensPerSecond.toFixed(0)} output tokens/s`;
  const peak =
    m.kvCacheUsagePeak === null ? "KV-cache usage not reported" : `KV-cache usage peak ${(m.kvCacheUsagePeak * 100).toFixed(0)} %`;
  return (
    `${load.concurrency} in flight of ${load.promptTokens} + ${load.outputTokens} tokens${extra}; ` +
    `${load.completed} of ${load.started} requests completed${load.failed > 0 ? `, ${load.failed} failed` : ""}${rate}; ` +
    `${m.preemptions ?? "unreported"} preemptions, ${peak}`
  );
}

/** The load in snake_case, as `measured.load` and the audit's canary_tested carry it. */
export function loadJson(load: MeasuredLoad | null): Record<string, unknown> | null {
  return (
    load && {
      concurrency: load.concurrency,
      prompt_tokens: load.promptTokens,
      output_tokens: load.outputTokens,
      extra: load.extra.map((e) => ({ prompt_tokens: e.promptTokens, output_tokens: e.outputTokens })),
      extra_why: load.why,
      basis: load.basis,
      prompt_tokens_seen_p50: load.promptTokensSeenP50,
      output_tokens_seen: load.outputTokensSeen,
      requests_started: load.started,
      requests_completed: load.completed,
      requests_failed: load.failed,
      requests_stopped: load.stopped,
      requests_per_second: load.requestsPerSecond,
      output_tokens_per_second: load.outputTokensPerSecond,
      duration_seconds: load.durationSeconds,
    }
  );
}

export type EvaluationStatus = "passed" | "failed" | "inconclusive" | "refused" | "error";
export type EvaluationMode = "predictive" | "canary";

export interface Measured {
  ttftP50Ms: number | null;
  ttftP95Ms: number | null;
  itlP50Ms: number | null;
  itlP95Ms: number | null;
  e2eP50Ms: number | null;
  samples: number;
  errors: string[];
  /** production's latency from its own /metrics histograms (no extra load on production) */
  productionBaseline: ProductionBaseline | null;
  /** the load the canary was tested under; null when it never served */
  load: MeasuredLoad | null;
  /** vllm:num_preemptions_total's rise during the load; null where the canary does not export it */
  preemptions: number | null;
  /** the highest vllm:kv_cache_usage_perc (0–1) seen during the load */
  kvCacheUsagePeak: number | null;
  /** the load's latency by the canary's own /metrics histograms, as production's baseline is measured */
  canaryServer: ServerLatency | null;
  /** how the canary ran: on the spare GPU, beside a quiesced production, or one already serving; "apply": production itself, verified after an apply */
  path: "spare" | "quiesced" | "attached" | "apply";
  downtimeSeconds: number | null;
}

export interface EvaluationResult {
  runId: string;
  mode: EvaluationMode;
  status: EvaluationStatus;
  validationPassed: boolean;
  validationReason: string;
  llmLatencyMs: number | null;
  candidate: Candidate;
  subsystem: string;
  predicted:
    | (MemoryPrediction & {
        vllmVersion: string | null;
        versionSource: string;
        vllmEngine: "V0" | "V1";
        whisperBasis: string;
        gpuIndex: number;
      })
    | null;
  measured: Measured | null;
  /** the gate that refused the run (status refused) */
  gate: string | null;
  promotionPath: string | null;
  startedAt: string;
  finishedAt: string;
}

/** The exit code of a result (docs/architecture.md, "Exit codes"): passed 0; failed and inconclusive 1; refused 3; error 4. */
export function exitCodeOfResult(result: Pick<EvaluationResult, "status">): number {
  switch (result.status) {
    case "passed":
      return EXIT.ok;
    case "failed":
    case "inconclusive":
      return EXIT.notPassed;
    case "refused":
      return EXIT.refused;
    case "error":
      return EXIT.fault;
  }
}

/** The result in snake_case, as `evaluate --json` prints it (docs/architecture.md, "Candidates and results"). */
export function resultJson(result: EvaluationResult): Record<string, unknown> {
  const p = result.predicted;
  const m = result.measured;
  return {
    run_id: result.runId,
    mode: result.mode,
    status: result.status,
    validation_passed: result.validationPassed,
    validation_reason: result.validationReason,
    llm_latency_ms: result.llmLatencyMs,
    candidate: candidateJson(result.candidate),
    subsystem: result.subsystem,
    gate: result.gate,
    predicted: p && {
      requested_bytes: p.requestedBytes,
      weights_bytes: p.weightsBytes,
      activation_bytes: p.activationBytes,
      non_torch_bytes: p.nonTorchBytes,
      cuda_graph_bytes: p.cudaGraphBytes,
      kv_cache_bytes: p.kvCacheBytes,
      kv_tokens: p.kvTokens,
      max_concurrency: p.maxConcurrency,
      whisper_bytes: p.whisperBytes,
      whisper_basis: p.whisperBasis,
      free_at_start_bytes: p.freeAtStartBytes,
      footprint_bytes: p.footprintBytes,
      max_num_seqs: p.maxNumSeqs,
      max_num_batched_tokens: p.maxNumBatchedTokens,
      vllm_version: p.vllmVersion,
      vllm_version_source: p.versionSource,
      vllm_engine: p.vllmEngine,
      gpu_index: p.gpuIndex,
      checks: p.checks.map((c) => ({ name: c.name, ok: c.ok, detail: c.detail })),
    },
    measured: m && {
      path: m.path,
      ttft_p50_ms: m.ttftP50Ms,
      ttft_p95_ms: m.ttftP95Ms,
      itl_p50_ms: m.itlP50Ms,
      itl_p95_ms: m.itlP95Ms,
      e2e_p50_ms: m.e2eP50Ms,
      samples: m.samples,
      errors: m.errors,
      load: loadJson(m.load),
      preemptions: m.preemptions,
      kv_cache_usage_peak: m.kvCacheUsagePeak,
      canary_server: m.canaryServer && {
        ttft_p50_ms: m.canaryServer.ttftP50Ms,
        ttft_p95_ms: m.canaryServer.ttftP95Ms,
        itl_p50_ms: m.canaryServer.itlP50Ms,
        itl_p95_ms: m.canaryServer.itlP95Ms,
        requests: m.canaryServer.requests,
      },
      production_baseline: m.productionBaseline && {
        ttft_p50_ms: m.productionBaseline.ttftP50Ms,
        ttft_p95_ms: m.productionBaseline.ttftP95Ms,
        itl_p50_ms: m.productionBaseline.itlP50Ms,
        itl_p95_ms: m.productionBaseline.itlP95Ms,
        requests: m.productionBaseline.requests,
        source: m.productionBaseline.source,
      },
      downtime_seconds: m.downtimeSeconds,
    },
    promotion_path: result.promotionPath,
    started_at: result.startedAt,
    finished_at: result.finishedAt,
  };
}
