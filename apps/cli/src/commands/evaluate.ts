import type { GlobalOptions, Io } from "../io.ts";
import { answer, usageError } from "../output.ts";
import { logLine, progressSinks, progressStyle } from "../progress.ts";
import { evaluatorFor, loadSettings } from "../settings.ts";

export interface EvaluateOptions extends GlobalOptions {
  candidate?: string;
  mode?: string;
  subsystem?: string;
}

/** `evaluate --candidate JSON`: SpicaGPUAllocation.runTest; a signal ends a canary run safely with 128 + its number. */
export async function runEvaluate(options: EvaluateOptions, io: Io): Promise<number> {
  if (options.candidate === undefined) {
    throw usageError(
      "--candidate is required",
      `gpu-canary evaluate --candidate '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}'`,
    );
  }
  if (options.mode !== undefined && options.mode !== "predictive" && options.mode !== "canary") {
    throw usageError(`--mode must be predictive or canary, got ${JSON.stringify(options.mode)}`, "leave it out to use KLR_CANARY_MODE");
  }
  const settings = loadSettings(io);
  const { candidateJson, exitCodeOfResult, loadSummary, resultJson, parseCandidate } = await import("@gpu-canary/spica-evaluator");
  const candidate = parseCandidate(options.candidate);
  const style = progressStyle(io, options);
  const controller = new AbortController();
  const unsubscribe = io.onSignal((signal) => {
    io.stderr(`${signal} received: ending the run safely (production is restored first)\n`);
    controller.abort(signal);
  });
  try {
    logLine(
      io,
      "evaluate",
      style,
      `started: candidate ${JSON.stringify(candidateJson(candidate))}${options.mode ? `, --mode ${options.mode}` : ""}`,
    );
    const evaluator = await evaluatorFor(settings, io, {
      owner: "gpu-canary evaluate",
      signal: controller.signal,
      progress: progressSinks(io, "evaluate", style),
    });
    const result = await evaluator.runTest(
      { vllm_memory_util: candidate.vllmMemoryUtil, whisper_model_size: candidate.whisperModelSize },
      {
        ...(options.mode ? { mode: options.mode } : {}),
        ...(options.subsystem ? { subsystem: options.subsystem } : {}),
      },
    );
    logLine(io, "evaluate", style, `finished: ${result.mode} ${result.status} (exit ${exitCodeOfResult(result)})`);
    const load = loadSummary(result.measured);
    answer(io, options, resultJson(result), () =>
      [
        `Mode: ${result.mode}`,
        `Status: ${result.status}`,
        `Validation: ${result.validationPassed}`,
        `Reason: ${result.validationReason}`,
        `LLM latency: ${result.llmLatencyMs === null ? "n/a (no canary completions)" : `${result.llmLatencyMs.toFixed(1)}ms`}`,
        ...(load ? [`Load: ${load}`, `Load shape: ${result.measured?.load?.basis ?? ""}`] : []),
        ...(result.measured?.downtimeSeconds != null ? [`Downtime: ${result.measured.downtimeSeconds.toFixed(1)} s charged`] : []),
        ...(result.promotionPath ? [`Promotion: ${result.promotionPath}`] : []),
        `Run: ${result.runId}`,
      ].join("\n"),
    );
    return exitCodeOfResult(result);
  } finally {
    unsubscribe();
  }
}
