import { messageOf } from "@gpu-canary/errors";
import { type Dispatcher, request } from "undici";
import { createSseDecoder } from "./sse.ts";
import { errorMessageOf, streamEventSchema } from "./vllm-answers.ts";

/** Why a request did not complete: vLLM's refusal, its error mid-stream, a cut stream, or our own stop. */
export type RequestFailure =
  | { kind: "http"; status: number; message: string }
  | { kind: "stream_error"; message: string }
  | { kind: "dropped"; message: string }
  | { kind: "bad_response"; message: string }
  | { kind: "unreachable"; message: string }
  | { kind: "stopped"; message: string };

export interface StreamOutcome {
  /** from sending to the first chunk with text (vLLM's benchmark definition) */
  ttftMs: number | null;
  /** gaps between later chunks with text */
  itlMs: number[];
  /** from sending to the last byte */
  e2eMs: number;
  /** chunks with text: the output tokens seen when vLLM sent no usage */
  textChunks: number;
  usage: { promptTokens: number; completionTokens: number } | null;
  failure: RequestFailure | null;
}

export interface StreamRequest {
  url: string;
  headers: Record<string, string>;
  body: unknown;
  signal: AbortSignal;
  /** the reason given when `signal` stops the request */
  stopReason: () => string;
  dispatcher: Dispatcher;
  now: () => number;
}

/** POST one streamed completion and time it; never throws for what the server or the network does. */
export async function streamRequest(req: StreamRequest): Promise<StreamOutcome> {
  const start = req.now();
  let first: number | null = null;
  let last = start;
  const itlMs: number[] = [];
  let textChunks = 0;
  let usage: StreamOutcome["usage"] = null;
  let done = false;
  let failure: RequestFailure | null = null;
  const finish = (f: RequestFailure | null): StreamOutcome => ({
    ttftMs: first === null ? null : first - start,
    itlMs,
    e2eMs: req.now() - start,
    textChunks,
    usage,
    failure: f,
  });

  const tick = () => {
    const t = req.now();
    if (first === null) first = t;
    else itlMs.push(t - last);
    last = t;
    textChunks += 1;
  };

  const decoder = createSseDecoder((data) => {
    if (failure !== null || done) return;
    if (data === "[DONE]") {
      done = true;
      return;
    }
    let event: unknown;
    try {
      event = JSON.parse(data);
    } catch {
      failure = { kind: "bad_response", message: `streamed an event that is not JSON: ${data.slice(0, 120)}` };
      return;
    }
    const plain = plainTextOf(event);
    if (plain !== null) {
      if (plain !== "") tick();
      return;
    }
    const parsed = streamEventSchema.safeParse(event);
    if (!parsed.success) {
      failure = { kind: "bad_response", message: `streamed an event not in vLLM's format: ${data.slice(0, 120)}` };
      return;
    }
    const e = parsed.data;
    const error = e.error?.message ?? (e.object === "error" ? (e.message ?? data.slice(0, 200)) : undefined);
    if (error !== undefined) {
      failure = { kind: "stream_error", message: error };
      return;
    }
    if (!e.choices) {
      failure = { kind: "bad_response", message: `streamed an event with neither choices nor an error: ${data.slice(0, 120)}` };
      return;
    }
    if (e.choices[0]?.text) tick();
    if (e.usage) usage = { promptTokens: e.usage.prompt_tokens, completionTokens: e.usage.completion_tokens };
  });

  let response: Dispatcher.ResponseData;
  try {
    response = await request(req.url, {
      method: "POST",
      headers: req.headers,
      body: JSON.stringify(req.body),
      signal: req.signal,
      dispatcher: req.dispatcher,
    });
  } catch (error) {
    if (req.signal.aborted) return finish({ kind: "stopped", message: req.stopReason() });
    return finish({ kind: "unreachable", message: describe(error) });
  }
  if (response.statusCode !== 200) {
    const text = await response.body.text().catch(() => "");
    return finish({ kind: "http", status: response.statusCode, message: errorMessageOf(text) });
  }
  try {
    for await (const chunk of response.body) {
      decoder.feed(chunk as Buffer);
      if (failure !== null) break;
    }
    decoder.end();
  } catch (error) {
    if (req.signal.aborted) return finish({ kind: "stopped", message: req.stopReason() });
    return finish({ kind: "dropped", message: `the stream was cut after ${textChunks} chunks: ${describe(error)}` });
  }
  if (failure !== null) {
    response.body.destroy();
    return finish(failure);
  }
  if (!done) return finish({ kind: "dropped", message: `the stream ended after ${textChunks} chunks without data: [DONE]` });
  return finish(null);
}

/**
 * The text of a plain token chunk, checked by hand: nearly every event is one, and checking each
 * with the zod schema took a third of the generator's CPU per request (pnpm bench). Anything
 * else (usage, errors, odd shapes) is null and goes to the schema.
 */
function plainTextOf(event: unknown): string | null {
  if (typeof event !== "object" || event === null) return null;
  const e = event as { choices?: unknown; usage?: unknown; error?: unknown; object?: unknown };
  if (e.usage != null || e.error !== undefined || e.object === "error" || !Array.isArray(e.choices)) return null;
  const text = (e.choices[0] as { text?: unknown } | undefined)?.text;
  return typeof text === "string" ? text : null;
}

function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e && parts.length < 3; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    const message = (e as { message?: unknown }).message;
    parts.push([typeof code === "string" ? code : "", typeof message === "string" ? message : messageOf(e)].filter(Boolean).join(" "));
  }
  return parts.join(": ");
}
