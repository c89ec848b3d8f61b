export { createVllmClient } from "./client.ts";
export type { ChatRequest, CompletionRequest, Health, ModelInfo, StreamedResult, VllmClient, VllmClientOptions } from "./client.ts";
export { VllmError, isConnectionProblem, isTimeout } from "./errors.ts";
export type { VllmErrorCode } from "./errors.ts";
export { firstOf, histogramDelta, histogramQuantile, histogramQuantileBucket, maxOf, parsePrometheusText, sumOf } from "./prometheus.ts";
export type { Sample } from "./prometheus.ts";
export { createStreamTimer, percentile } from "./stream-timing.ts";
export type { StreamTiming } from "./stream-timing.ts";
