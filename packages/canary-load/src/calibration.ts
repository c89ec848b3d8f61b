/**
 * Prompt lengths without a tokenizer: the model's tokenizer is wherever vLLM runs, not here. One
 * completion of a known number of our words tells how many tokens vLLM counts per word (its
 * `usage.prompt_tokens`); a prompt of T tokens is then T ÷ that many words. The few tokens a
 * template adds (BOS) are spread over the calibration's words, so it is long enough to make
 * them small, and each request reports the tokens vLLM actually saw.
 */
export const CALIBRATION_WORDS = 200;

export function tokensPerWord(words: number, promptTokens: number): number {
  if (!Number.isInteger(words) || words <= 0) throw new RangeError(`a calibration needs a positive word count, got ${words}`);
  if (!Number.isFinite(promptTokens) || promptTokens <= 0)
    throw new RangeError(`vLLM counted ${promptTokens} prompt tokens for ${words} words: not a count to calibrate on`);
  return promptTokens / words;
}

/** How many words make a prompt of `targetTokens` tokens: at least one. */
export function wordsFor(targetTokens: number, ratio: number): number {
  if (!(ratio > 0) || !Number.isFinite(ratio)) throw new RangeError(`tokens per word must be positive, got ${ratio}`);
  return Math.max(1, Math.round(targetTokens / ratio));
}
