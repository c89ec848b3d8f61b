import type { GlobalOptions, Io } from "../io.ts";
import { answer, usageError } from "../output.ts";
import { logLine, progressSinks, progressStyle } from "../progress.ts";
import type { FleetState } from "../fleet.ts";
import { type Settings, evaluatorFor, loadSettings, withFleet } from "../settings.ts";

export interface EvaluateOptions extends GlobalOptions {
  candidate?: string;
  mode?: string;
  subsystem?: string;
  wait?: string;
}

/** `--wait SECONDS`: how long a quiesced run or an apply waits for a fleet maintenance slot (default 0: refuse at once). */
export function parseFleetWait(text: string | undefined, example: string): number {
  if (text === undefined) return 0;
  const value = Number(text);
  if (text.trim() === "" || !Number.isFinite(value) || value < 0)
    throw usageError(`--wait: expected a number of seconds, 0 or more, got ${JSON.stringify(text)}`, example);
  return value;
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
  const waitSeconds = parseFleetWait(
    options.wait,
    `gpu-canary evaluate --wait 600 --candidate '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}'`,
  );
  const settings = loadSettings(io);
  // A predictive run keeps working with what is local: only a canary run needs the fleet's database.
  if ((options.mode ?? settings.config.canaryMode) === "predictive") return evaluate(options, io, settings, null);
  return withFleet(settings, io, { waitSeconds }, (fleet) => evaluate(options, io, settings, fleet));
}

async function evaluate(options: EvaluateOptions, io: Io, settings: Settings, fleet: FleetState | null): Promise<number> {
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
      fleet,
      progress: progressSinks(io, "evaluate", style),
    });
    const result = await evaluator.runTest(
      { vllm_memory_util: candidate.vllmMemoryUtil, whisper_model_size: candidate.whisperModelSize },
      {
        ...(options.mode === "predictive" || options.mode === "canary" ? { mode: options.mode } : {}),
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
