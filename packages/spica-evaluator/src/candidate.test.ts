import { describe, expect, it } from "vitest";
import { CandidateError, parseCandidate } from "./candidate.ts";

describe("parseCandidate", () => {
  it("reads a candidate from JSON text or a value", () => {
    expect(parseCandidate('{"vllm_memory_util": 0.7, "whisper_model_size": "base"}')).toEqual({
      vllmMemoryUtil: 0.7,
      whisperModelSize: "base",
    });
  });

  it("refuses a key a candidate does not have, naming it, instead of ignoring it", () => {
    const parse = () => parseCandidate({ vllm_memory_util: 0.7, whisper_model_size: "base", max_model_len: 8192 });
    expect(parse).toThrow(CandidateError);
    expect(parse).toThrow(
      'the candidate is malformed: candidate has "max_model_len", which a candidate does not have (only vllm_memory_util and whisper_model_size)',
    );
    expect(() => parseCandidate({ vllm_memory_util: 0.7, whisper_size: "base" })).toThrow(
      /whisper_model_size must be one of .*; candidate has "whisper_size"/,
    );
  });
});
