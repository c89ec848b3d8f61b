import { GpuCanaryError } from "@gpu-canary/errors";

export type CanaryLoadErrorCode = "LOAD_BAD_OPTIONS" | "LOAD_UNREACHABLE" | "LOAD_NO_MODEL" | "LOAD_CALIBRATION_FAILED";

const HINTS: Record<CanaryLoadErrorCode, string> = {
  LOAD_BAD_OPTIONS: "fix the load's settings named in the message (KLR_CANARY_* where they come from settings)",
  LOAD_UNREACHABLE: "is the canary's vLLM running and listening there, and healthy? Its log says why not",
  LOAD_NO_MODEL: "is the URL the canary's vLLM, and does it serve a model? `curl <url>/v1/models` shows what it lists",
  LOAD_CALIBRATION_FAILED: "the canary's vLLM did not answer a one-token completion with its usage: see its log for the request",
};

const KINDS: Record<CanaryLoadErrorCode, "usage" | "fault"> = {
  LOAD_BAD_OPTIONS: "usage",
  LOAD_UNREACHABLE: "fault",
  LOAD_NO_MODEL: "fault",
  LOAD_CALIBRATION_FAILED: "fault",
};

/** The load could not be started at all; a request that fails once the load runs is a result, never thrown. */
export class CanaryLoadError extends GpuCanaryError {
  override readonly code: CanaryLoadErrorCode;

  constructor(code: CanaryLoadErrorCode, message: string, options: { cause?: unknown; status?: number } = {}) {
    super(code, message, { kind: KINDS[code], hint: HINTS[code], cause: options.cause, details: { status: options.status ?? null } });
    this.code = code;
  }
}
