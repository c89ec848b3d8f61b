import * as z from "zod";

/** vLLM's error body: `{"object":"error","message":…}` before 0.10, `{"error":{"message":…}}` since; anything else as text. */
export function errorMessageOf(text: string): string {
  try {
    const body = errorSchema.safeParse(JSON.parse(text));
    if (body.success) return body.data.error?.message ?? body.data.message ?? text.slice(0, 300);
  } catch {
    // not JSON: a proxy's page or a crash's text, said as it came
  }
  return text.trim().slice(0, 300) || "(empty body)";
}

const errorSchema = z.looseObject({
  message: z.string().optional(),
  error: z.looseObject({ message: z.string() }).optional(),
});

export const modelsSchema = z.object({ data: z.array(z.looseObject({ id: z.string() })) });

export const usageSchema = z.looseObject({
  prompt_tokens: z.number().int().nonnegative(),
  completion_tokens: z.number().int().nonnegative(),
});

export const completionSchema = z.looseObject({ usage: usageSchema });

/**
 * One streamed event of /v1/completions: text chunks, the last one with `usage` (and no choices)
 * when `stream_options.include_usage` is asked, or an error vLLM met after it had begun answering.
 */
export const streamEventSchema = z.looseObject({
  choices: z.array(z.looseObject({ text: z.string().nullish() })).optional(),
  usage: usageSchema.nullish(),
  object: z.string().optional(),
  message: z.string().optional(),
  error: z.looseObject({ message: z.string() }).optional(),
});
