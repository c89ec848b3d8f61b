import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { messageOf } from "@gpu-canary/errors";
import { createParser } from "eventsource-parser";
import { type Dispatcher, request } from "undici";
import * as z from "zod";
import { VllmError, isConnectionProblem, isTimeout } from "./errors.ts";
import { type Sample, firstOf, parsePrometheusText } from "./prometheus.ts";
import { type StreamTiming, createStreamTimer } from "./stream-timing.ts";

export interface VllmClientOptions {
  /** KLR_VLLM_URL, e.g. http://127.0.0.1:8000 */
  baseUrl: string;
  /** KLR_VLLM_API_KEY: sent as a bearer token on /v1/* only (vLLM authenticates nothing else) */
  apiKey?: string;
  dispatcher?: Dispatcher;
  /** a monotonic clock in milliseconds for latency measurements */
  now?: () => number;
}

export type Health =
  | { state: "healthy" }
  | { state: "refused"; detail: string }
  | { state: "timeout" }
  | { state: "engine_dead" }
  | { state: "unexpected"; status: number };

export interface ModelInfo {
  id: string;
  root: string | null;
  maxModelLen: number | null;
}

export interface CompletionRequest {
  prompt: string;
  maxTokens: number;
  model?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface ChatRequest {
  messages: { role: "system" | "user" | "assistant"; content: string }[];
  maxTokens: number;
  model?: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

export interface StreamedResult extends StreamTiming {
  text: string;
}

const modelsSchema = z.object({
  data: z.array(z.looseObject({ id: z.string(), root: z.string().nullish(), max_model_len: z.number().nullish() })),
});
const versionSchema = z.object({ version: z.string() });
const completionSchema = z.object({
  choices: z.array(z.looseObject({ text: z.string() })).min(1),
  usage: z.looseObject({ completion_tokens: z.number() }).optional(),
});
const chatSchema = z.object({ choices: z.array(z.looseObject({ message: z.looseObject({ content: z.string().nullable() }) })).min(1) });
const sleepingSchema = z.object({ is_sleeping: z.boolean() });

export function createVllmClient(options: VllmClientOptions) {
  let base: URL;
  try {
    base = new URL(options.baseUrl);
    if (base.protocol !== "http:" && base.protocol !== "https:") throw new Error("not http");
  } catch (error) {
    throw new VllmError("VLLM_BAD_URL", `not an http(s) URL: ${JSON.stringify(options.baseUrl)}`, { cause: error });
  }
  const now = options.now ?? (() => performance.now());
  const urlOf = (path: string) => new URL(path, base).toString();

  const signalFor = (timeoutMs: number, signal?: AbortSignal) =>
    signal ? AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]) : AbortSignal.timeout(timeoutMs);

  const call = async (method: "GET" | "POST", path: string, init: { body?: unknown; timeoutMs: number; signal?: AbortSignal }) => {
    const headers: Record<string, string> = { accept: "application/json, text/event-stream, text/plain" };
    if (init.body !== undefined) headers["content-type"] = "application/json";
    if (options.apiKey && path.startsWith("/v1/")) headers.authorization = `Bearer ${options.apiKey}`;
    try {
      return await request(urlOf(path), {
        method,
        headers,
        body: init.body === undefined ? null : JSON.stringify(init.body),
        signal: signalFor(init.timeoutMs, init.signal),
        ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
      });
    } catch (error) {
      throw translate(error, path, init.timeoutMs);
    }
  };

  const translate = (error: unknown, path: string, timeoutMs: number): Error => {
    if (error instanceof VllmError) return error;
    if (isTimeout(error)) return new VllmError("VLLM_TIMEOUT", `${urlOf(path)} did not answer within ${timeoutMs} ms`, { cause: error });
    if (isConnectionProblem(error))
      return new VllmError("VLLM_UNREACHABLE", `cannot reach vLLM at ${urlOf(path)}: ${describe(error)}`, { cause: error });
    if ((error as { name?: string }).name === "AbortError") return error as Error;
    return new VllmError("VLLM_UNREACHABLE", `request to ${urlOf(path)} failed: ${describe(error)}`, { cause: error });
  };

  const json = async <T>(
    method: "GET" | "POST",
    path: string,
    schema: z.ZodType<T>,
    init: { body?: unknown; timeoutMs: number; signal?: AbortSignal },
  ): Promise<T> => {
    const response = await call(method, path, init);
    let text: string;
    try {
      text = await response.body.text();
    } catch (error) {
      throw translate(error, path, init.timeoutMs);
    }
    if (response.statusCode !== 200) {
      throw new VllmError("VLLM_HTTP_ERROR", `${method} ${path} answered ${response.statusCode}: ${text.slice(0, 300)}`, {
        status: response.statusCode,
      });
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch (error) {
      throw new VllmError("VLLM_BAD_RESPONSE", `${method} ${path} answered something that is not JSON: ${text.slice(0, 120)}`, {
        cause: error,
      });
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success)
      throw new VllmError(
        "VLLM_BAD_RESPONSE",
        `${method} ${path} answered JSON not in vLLM's format: ${parsed.error.issues[0]?.message ?? ""}`,
      );
    return parsed.data;
  };

  /** POST a streamed request and time its server-sent events; `pick` takes a chunk's text. */
  const stream = async (
    path: string,
    body: object,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    pick: (chunk: unknown) => string,
  ): Promise<StreamedResult> => {
    const timer = createStreamTimer(now);
    const response = await call("POST", path, { body: { ...body, stream: true }, timeoutMs, signal });
    if (response.statusCode !== 200) {
      const text = await response.body.text().catch(() => "");
      throw new VllmError("VLLM_HTTP_ERROR", `POST ${path} answered ${response.statusCode}: ${text.slice(0, 300)}`, {
        status: response.statusCode,
      });
    }
    const seen: { text: string; done: boolean; bad: string | null } = { text: "", done: false, bad: null };
    const parser = createParser({
      onEvent: (event) => {
        if (event.data === "[DONE]") {
          seen.done = true;
          return;
        }
        try {
          const piece = pick(JSON.parse(event.data));
          seen.text += piece;
          timer.chunk(piece !== "");
        } catch {
          seen.bad ??= event.data.slice(0, 120);
        }
      },
    });
    try {
      for await (const chunk of response.body) parser.feed((chunk as Buffer).toString("utf8"));
    } catch (error) {
      throw translate(error, path, timeoutMs);
    }
    if (seen.bad !== null) throw new VllmError("VLLM_BAD_RESPONSE", `POST ${path} streamed an event that is not vLLM's: ${seen.bad}`);
    if (!seen.done) throw new VllmError("VLLM_UNREACHABLE", `POST ${path}: the stream ended before [DONE]`);
    return { ...timer.finish(), text: seen.text };
  };

  const health = async (timeoutMs = 1000): Promise<Health> => {
    try {
      const response = await call("GET", "/health", { timeoutMs });
      await response.body.dump();
      if (response.statusCode === 200) return { state: "healthy" };
      if (response.statusCode === 503) return { state: "engine_dead" };
      return { state: "unexpected", status: response.statusCode };
    } catch (error) {
      if (error instanceof VllmError && error.code === "VLLM_TIMEOUT") return { state: "timeout" };
      if (error instanceof VllmError && error.code === "VLLM_UNREACHABLE") return { state: "refused", detail: error.message };
      throw error;
    }
  };

  const models = async (timeoutMs = 5000): Promise<ModelInfo[]> => {
    const body = await json("GET", "/v1/models", modelsSchema, { timeoutMs });
    return body.data.map((m) => ({ id: m.id, root: m.root ?? null, maxModelLen: m.max_model_len ?? null }));
  };
  // vLLM before 0.8 (vllm-project/vllm#13568) refuses a request that names no model ("The model
  // `None` does not exist"): every request names one — the caller's, else the first one served,
  // asked once and remembered (a restarted vLLM serves what it served before).
  let served: string | null = null;
  const modelOf = async (model: string | undefined, timeoutMs: number): Promise<string> => {
    if (model) return model;
    if (served) return served;
    const first = (await models(Math.max(1, timeoutMs)))[0]?.id;
    if (!first) throw new VllmError("VLLM_BAD_RESPONSE", `GET /v1/models at ${base.toString()} lists no model`);
    served = first;
    return first;
  };

  const completion = async (req: CompletionRequest) => {
    const body = await json("POST", "/v1/completions", completionSchema, {
      body: { prompt: req.prompt, max_tokens: req.maxTokens, model: await modelOf(req.model, req.timeoutMs) },
      timeoutMs: req.timeoutMs,
      signal: req.signal,
    });
    return { text: body.choices[0]?.text ?? "", completionTokens: body.usage?.completion_tokens ?? null };
  };

  const pickCompletion = (chunk: unknown) =>
    z.object({ choices: z.array(z.looseObject({ text: z.string() })) }).parse(chunk).choices[0]?.text ?? "";
  const pickChat = (chunk: unknown) =>
    z.object({ choices: z.array(z.looseObject({ delta: z.looseObject({ content: z.string().nullish() }) })) }).parse(chunk).choices[0]
      ?.delta.content ?? "";

  return {
    baseUrl: base.toString(),
    health,
    models,
    async version(timeoutMs = 5000): Promise<string> {
      return (await json("GET", "/version", versionSchema, { timeoutMs })).version;
    },
    completion,
    streamCompletion: async (req: CompletionRequest) =>
      stream(
        "/v1/completions",
        { prompt: req.prompt, max_tokens: req.maxTokens, model: await modelOf(req.model, req.timeoutMs) },
        req.timeoutMs,
        req.signal,
        pickCompletion,
      ),
    async chat(req: ChatRequest) {
      const body = await json("POST", "/v1/chat/completions", chatSchema, {
        body: { messages: req.messages, max_tokens: req.maxTokens, model: await modelOf(req.model, req.timeoutMs) },
        timeoutMs: req.timeoutMs,
        signal: req.signal,
      });
      return { text: body.choices[0]?.message.content ?? "" };
    },
    streamChat: async (req: ChatRequest) =>
      stream(
        "/v1/chat/completions",
        { messages: req.messages, max_tokens: req.maxTokens, model: await modelOf(req.model, req.timeoutMs) },
        req.timeoutMs,
        req.signal,
        pickChat,
      ),
    async metrics(timeoutMs = 5000): Promise<Sample[]> {
      const response = await call("GET", "/metrics", { timeoutMs });
      const text = await response.body.text();
      if (response.statusCode !== 200)
        throw new VllmError("VLLM_HTTP_ERROR", `GET /metrics answered ${response.statusCode}`, { status: response.statusCode });
      return parsePrometheusText(text);
    },
    /** The labels of vllm:cache_config_info (gpu_memory_utilization, num_gpu_blocks, …), or null where not exported. */
    async cacheConfig(timeoutMs = 5000): Promise<Record<string, string> | null> {
      return firstOf(await this.metrics(timeoutMs), ["vllm:cache_config_info"])?.labels ?? null;
    },
    /**
     * The gpu_memory_utilization this vLLM serves with (its vllm:cache_config_info), or null where
     * /metrics does not say or says something that is not a fraction in (0, 1]. Throws when /metrics fails.
     */
    async servedUtilization(timeoutMs = 5000): Promise<number | null> {
      const util = Number((await this.cacheConfig(timeoutMs))?.gpu_memory_utilization ?? Number.NaN);
      return Number.isFinite(util) && util > 0 && util <= 1 ? util : null;
    },
    async sleep(level: 1 | 2 = 1, timeoutMs = 120_000): Promise<void> {
      const response = await call("POST", `/sleep?level=${level}`, { timeoutMs });
      const text = await response.body.text();
      if (response.statusCode !== 200)
        throw new VllmError(
          "VLLM_HTTP_ERROR",
          `POST /sleep answered ${response.statusCode}: ${text.slice(0, 200)} (sleep mode needs VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode)`,
          { status: response.statusCode },
        );
    },
    async wakeUp(timeoutMs = 120_000): Promise<void> {
      const response = await call("POST", "/wake_up", { timeoutMs });
      const text = await response.body.text();
      if (response.statusCode !== 200)
        throw new VllmError("VLLM_HTTP_ERROR", `POST /wake_up answered ${response.statusCode}: ${text.slice(0, 200)}`, {
          status: response.statusCode,
        });
    },
    async isSleeping(timeoutMs = 5000): Promise<boolean> {
      return (await json("GET", "/is_sleeping", sleepingSchema, { timeoutMs })).is_sleeping;
    },
    /**
     * Poll /health at a fine cadence with short per-request timeouts until it answers 200:
     * refused, reset, hung up and a port that accepts but never answers all mean "not yet".
     * An engine that reports itself dead (503) ends the wait at once.
     */
    async waitUntilHealthy(opts: {
      deadlineMs: number;
      intervalMs?: number;
      requestTimeoutMs?: number;
      signal?: AbortSignal;
    }): Promise<{ waitedMs: number }> {
      const start = now();
      const interval = opts.intervalMs ?? 25;
      for (;;) {
        opts.signal?.throwIfAborted();
        const left = opts.deadlineMs - (now() - start);
        if (left <= 0) throw new VllmError("VLLM_NOT_READY", `vLLM at ${base.toString()} was not healthy within ${opts.deadlineMs} ms`);
        const state = await health(Math.max(10, Math.min(opts.requestTimeoutMs ?? 250, left)));
        if (state.state === "healthy") return { waitedMs: now() - start };
        if (state.state === "engine_dead")
          throw new VllmError("VLLM_ENGINE_DEAD", `vLLM at ${base.toString()} reports its engine dead (503 on /health)`, { status: 503 });
        await sleep(Math.min(interval, Math.max(1, opts.deadlineMs - (now() - start))), undefined, { signal: opts.signal });
      }
    },
    /** One short real completion: the proof that a vLLM serves (health alone proves nothing). */
    async servesCompletion(opts: { timeoutMs: number; model?: string }): Promise<{ e2eMs: number }> {
      const start = now();
      await completion({ prompt: "ping", maxTokens: 1, timeoutMs: opts.timeoutMs, ...(opts.model ? { model: opts.model } : {}) });
      return { e2eMs: now() - start };
    },
  };
}

export type VllmClient = ReturnType<typeof createVllmClient>;

function describe(error: unknown): string {
  const code = (error as { code?: string }).code;
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return [code, cause?.code, messageOf(error)].filter(Boolean).join(" ");
}
