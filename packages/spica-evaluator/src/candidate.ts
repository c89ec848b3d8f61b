import { WHISPER_SIZES, type WhisperSize } from "@gpu-canary/config";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import * as z from "zod";

/** `{"vllm_memory_util": 0.75, "whisper_model_size": "small"}` (docs/architecture.md, "Candidates and results"). */
export const candidateSchema = z.strictObject(
  {
    vllm_memory_util: z
      .number({ error: "must be a number" })
      .refine(Number.isFinite, { error: "must be finite" })
      .refine((v) => v > 0 && v <= 1, { error: "must be in (0, 1]" }),
    whisper_model_size: z.enum(WHISPER_SIZES, { error: `must be one of ${WHISPER_SIZES.join(" ")}` }),
  },
  {
    // A key a candidate does not have (max_model_len, a typo) would be ignored silently: refused, named.
    error: (issue) =>
      issue.code === "unrecognized_keys"
        ? `has ${issue.keys.map((k) => JSON.stringify(k)).join(", ")}, which a candidate does not have (only vllm_memory_util and whisper_model_size)`
        : undefined,
  },
);

export interface Candidate {
  vllmMemoryUtil: number;
  whisperModelSize: WhisperSize;
}

export class CandidateError extends GpuCanaryError {
  constructor(message: string) {
    super("CANDIDATE_INVALID", message, {
      kind: "usage",
      hint: `a candidate is a JSON object like {"vllm_memory_util": 0.75, "whisper_model_size": "small"}; sizes: ${WHISPER_SIZES.join(" ")}`,
    });
  }
}

/** A candidate from JSON text or a parsed value; anything malformed is a usage error (exit 2) that says what. */
export function parseCandidate(input: unknown): Candidate {
  let value = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input) as unknown;
    } catch (error) {
      throw new CandidateError(`the candidate is not valid JSON: ${messageOf(error)}`);
    }
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new CandidateError(`the candidate must be a JSON object, got ${Array.isArray(value) ? "an array" : JSON.stringify(value)}`);
  }
  const parsed = candidateSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "candidate"} ${i.message}`);
    throw new CandidateError(`the candidate is malformed: ${problems.join("; ")}`);
  }
  return { vllmMemoryUtil: parsed.data.vllm_memory_util, whisperModelSize: parsed.data.whisper_model_size };
}

export function candidateJson(candidate: Candidate): z.infer<typeof candidateSchema> {
  return { vllm_memory_util: candidate.vllmMemoryUtil, whisper_model_size: candidate.whisperModelSize };
}
