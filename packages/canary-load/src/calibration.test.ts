import { describe, expect, it } from "vitest";
import { tokensPerWord, wordsFor } from "./calibration.ts";
import { buildPrompt, randomSource } from "./prompt.ts";

describe("calibration", () => {
  it("turns vLLM's prompt_tokens for a known word count into tokens per word, and a target into words", () => {
    const ratio = tokensPerWord(200, 251);
    expect(ratio).toBeCloseTo(1.255);
    expect(wordsFor(2000, ratio)).toBe(1594);
    expect(wordsFor(1, 4)).toBe(1);
  });

  it("refuses counts no calibration can rest on, naming them", () => {
    expect(() => tokensPerWord(200, 0)).toThrow(/counted 0 prompt tokens for 200 words/);
    expect(() => tokensPerWord(0, 10)).toThrow(/positive word count, got 0/);
    expect(() => wordsFor(10, 0)).toThrow(/must be positive, got 0/);
  });
});

describe("buildPrompt", () => {
  it("makes a prompt of exactly the words asked, the same for the same seed", () => {
    const a = buildPrompt(500, randomSource(7));
    expect(a.split(" ")).toHaveLength(500);
    expect(buildPrompt(500, randomSource(7))).toBe(a);
  });

  it("starts each request's prompt differently, so vLLM's prefix cache shares no blocks between them", () => {
    const random = randomSource(1);
    const starts = new Set(Array.from({ length: 200 }, () => buildPrompt(64, random).split(" ").slice(0, 4).join(" ")));
    expect(starts.size).toBe(200);
  });

  it("refuses a prompt of no words", () => {
    expect(() => buildPrompt(0, randomSource(1))).toThrow(/at least one word, got 0/);
  });
});
