import { percentile } from "./percentile.ts";
import type { RequestFailure } from "./stream-request.ts";

export interface RequestRecord {
  /** order of start, from 0 */
  index: number;
  /** a steady request, or one of the options' `extra` */
  kind: "steady" | "extra";
  /** ms from the load's start */
  startedMs: number;
  promptTokensAsked: number;
  promptWords: number;
  /** usage.prompt_tokens from the stream's last chunk; null when vLLM sent none */
  promptTokensSeen: number | null;
  outputTokensAsked: number;
  /** usage.completion_tokens, else the chunks with text (one token each unless vLLM batches them) */
  outputTokensSeen: number;
  ttftMs: number | null;
  itlMs: number[];
  e2eMs: number;
  /** null: completed, [DONE] seen */
  failure: RequestFailure | null;
}

export type StoppedBy = "duration" | "max_requests" | "deadline" | "signal";

export interface LoadTotals {
  started: number;
  completed: number;
  /** vLLM refused or failed them, or the stream was cut */
  failed: number;
  /** stopped by us: the hard deadline or the caller's signal */
  stopped: number;
  /** most requests in flight at once, seen from here */
  peakConcurrency: number;
  outputTokens: number;
  requestsPerSecond: number;
  outputTokensPerSecond: number;
  /** over completed requests, as `vllm bench serve` counts */
  ttftMs: { p50: number | null; p95: number | null };
  itlMs: { p50: number | null; p95: number | null };
  e2eMs: { p50: number | null; p95: number | null };
  /** p50 of usage.prompt_tokens over steady requests that reported it */
  promptTokensSeenP50: number | null;
}

/** Totals over every request; rates over the load's measured duration (its start to its last request's end). */
export function totalsOf(records: readonly RequestRecord[], durationMs: number, peakConcurrency: number): LoadTotals {
  const completed = records.filter((r) => r.failure === null);
  const stopped = records.filter((r) => r.failure?.kind === "stopped").length;
  const outputTokens = records.reduce((sum, r) => sum + r.outputTokensSeen, 0);
  const seconds = durationMs / 1000;
  const rate = (n: number) => (seconds > 0 ? n / seconds : 0);
  const ttft = completed.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs]));
  const itl = completed.flatMap((r) => r.itlMs);
  const e2e = completed.map((r) => r.e2eMs);
  const promptSeen = records.flatMap((r) => (r.kind === "steady" && r.promptTokensSeen !== null ? [r.promptTokensSeen] : []));
  const p = (values: number[]) => ({ p50: percentile(values, 50), p95: percentile(values, 95) });
  return {
    started: records.length,
    completed: completed.length,
    failed: records.length - completed.length - stopped,
    stopped,
    peakConcurrency,
    outputTokens,
    requestsPerSecond: rate(completed.length),
    outputTokensPerSecond: rate(outputTokens),
    ttftMs: p(ttft),
    itlMs: p(itl),
    e2eMs: p(e2e),
    promptTokensSeenP50: percentile(promptSeen, 50),
  };
}
