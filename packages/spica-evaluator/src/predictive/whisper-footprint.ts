import type { WhisperSize } from "@gpu-canary/config";

const GIB = 1024 ** 3;

/**
 * Whisper's GPU footprint per size, fp16 (openai-whisper / faster-whisper): the budget table of
 * predictive-memory.md §3.4, F16 = 0.5 GiB + 1.45 × the fp16 weights, calibrated on large-v2's
 * measured 4708 MiB (openai-whisper) and 4525 MiB (faster-whisper) in SYSTRAN/faster-whisper's
 * README; parameter counts from openai/whisper's README. A measured footprint of the running
 * Whisper wins over this table; for another size the table's difference is added to it.
 */
export const WHISPER_FP16_GIB: Record<WhisperSize, number> = {
  none: 0,
  tiny: 0.61,
  base: 0.7,
  small: 1.16,
  medium: 2.58,
  large: 4.69,
  "large-v2": 4.69,
  "large-v3": 4.69,
  turbo: 2.68,
};

export function whisperBytes(
  candidate: WhisperSize,
  current: WhisperSize,
  measuredCurrentBytes: number | null,
): { bytes: number; basis: string } {
  const table = (size: WhisperSize) => WHISPER_FP16_GIB[size] * GIB;
  if (candidate === "none") return { bytes: 0, basis: "no Whisper on this GPU" };
  if (measuredCurrentBytes !== null && current !== "none") {
    const bytes =
      candidate === current ? measuredCurrentBytes : Math.max(0, Math.round(measuredCurrentBytes + table(candidate) - table(current)));
    return {
      bytes,
      basis:
        candidate === current
          ? "the running Whisper's measured footprint"
          : `the running Whisper (${current})'s measured footprint adjusted to ${candidate}`,
    };
  }
  return { bytes: Math.round(table(candidate)), basis: `the ${candidate} footprint table` };
}
