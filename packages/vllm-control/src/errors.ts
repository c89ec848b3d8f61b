import { GpuCanaryError } from "@gpu-canary/errors";

export type ControlErrorCode =
  | "PRODUCTION_STOP_FAILED"
  | "PRODUCTION_START_FAILED"
  | "PRODUCTION_NOT_CONFIGURED"
  | "CANARY_LAUNCH_FAILED"
  | "CANARY_STOP_FAILED"
  | "WHISPER_COMMAND_FAILED"
  | "WHISPER_NOT_STEADY"
  | "VLLM_COMMAND_INVALID"
  | "WATCHDOG_FAILED";

export class ControlError extends GpuCanaryError {
  override readonly code: ControlErrorCode;

  constructor(code: ControlErrorCode, message: string, hint: string, details: Record<string, unknown> = {}) {
    super(code, message, {
      kind: code === "VLLM_COMMAND_INVALID" || code === "PRODUCTION_NOT_CONFIGURED" ? "usage" : "fault",
      hint,
      details,
    });
    this.code = code;
  }
}
