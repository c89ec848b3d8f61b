import Fastify from "fastify";
import * as z from "zod";
import { SimEngine } from "./sim-engine.ts";
import { E2E_BUCKETS, type Family, Histogram, ITL_BUCKETS, TTFT_BUCKETS, buckets125, float, metricNames, render } from "./sim-metrics.ts";

/**
 * An OpenAI-compatible server that speaks vLLM's formats (vllm/entrypoints/openai), for tests
 * and the demo: /health, /v1/models, /version, /v1/completions and /v1/chat/completions (plain
 * and streamed as server-sent events ending in `data: [DONE]`), /metrics with vllm:* names
 * including vllm:cache_config_info, and the sleep-mode endpoints. Requests share a KV cache of
 * kvCacheTokens (sim-engine.ts): preemptions, KV usage and latency under load are modelled, and
 * /metrics carries the histograms of the requests really served. Failure modes make the
 * misbehaviours a client must survive.
 */
export interface SimVllmOptions {
  model: string;
  servedModelName?: string;
  /**
   * serve /sleep, /wake_up and /is_sleeping, as vLLM does only with VLLM_SERVER_DEV_MODE=1 and
   * --enable-sleep-mode (default: on; the process turns it off unless started so)
   */
  sleepMode?: boolean;
  /** refuse a request that names no model, as vLLM before 0.8 did (vllm-project/vllm#13568) */
  requireModel?: boolean;
  maxModelLen?: number;
  gpuMemoryUtilization: number;
  version?: string;
  /** per generated token, for a request running alone (default 5) */
  tokenLatencyMs?: number;
  /** the num_gpu_blocks label of vllm:cache_config_info (default: the KV capacity / 16) */
  numGpuBlocks?: number;
  /**
   * the KV cache's capacity in tokens (default numGpuBlocks × 16, else 131072); vllm-main derives
   * it from the utilization, the host's GPU and the model folder (kvCacheTokensFor)
   */
  kvCacheTokens?: number;
  /** k in tokenLatency × (1 + k × (running − 1)): how much each extra running request slows a step (default 0.02) */
  loadSlowdown?: number;
  /** prefill time per 1000 prompt tokens, paid again by a request resumed after a preemption (default: tokenLatencyMs) */
  prefillMsPer1kTokens?: number;
  /** vLLM's max_num_seqs (default 256) */
  maxNumSeqs?: number;
  /** vLLM's max_num_batched_tokens: the tokens one step computes, prompt chunks included (default 8192) */
  maxNumBatchedTokens?: number;
  /** the model's own answer length: without ignore_eos a request stops there (finish_reason "stop"); default never */
  eosAfterTokens?: number;
  /** KV usage (0…1) at which onOutOfMemory is told, each step at or past it */
  oomAtUsage?: number;
  /** the process writes PyTorch's out-of-memory text and exits */
  onOutOfMemory?: (usage: number) => void;
  failure?: {
    /** /health accepts the connection and never answers */
    healthHang?: boolean;
    /** /health answers 503, as vLLM does once its engine died */
    engineDead?: boolean;
    /** completions accept and never answer */
    completionHang?: boolean;
    /** streams stop after the first chunk, the connection cut */
    dropMidStream?: boolean;
  };
  /** told after each finished completion (the process uses it to crash mid-test) */
  onCompletion?: (count: number) => void;
  /** told when sleep mode changes, to move the simulated GPU memory */
  onSleepChange?: (sleeping: boolean) => void | Promise<void>;
}

/** Prompt tokens per whitespace-separated word of prompt text: English averages about 1.3 in Llama's tokenizer. */
export const PROMPT_TOKENS_PER_WORD = 1.3;

/** The simulated count of prompt tokens in text (no tokenizer): words × 1.3, at least 1. */
export function promptTokensOf(text: string): number {
  const words = text.split(/\s+/).filter(Boolean).length;
  return Math.max(1, Math.round(words * PROMPT_TOKENS_PER_WORD));
}

const WORDS = ["The", " canary", " sings", " while", " production", " keeps", " serving", "."];

const contentSchema = z.union([z.string(), z.array(z.looseObject({ text: z.string().optional() })), z.null()]);
const requestSchema = z.looseObject({
  model: z.string().optional(),
  prompt: z.union([z.string(), z.array(z.string()), z.array(z.number()), z.array(z.array(z.number()))]).optional(),
  messages: z.array(z.looseObject({ content: contentSchema.optional() })).optional(),
  max_tokens: z.number().int().nonnegative().nullish(),
  max_completion_tokens: z.number().int().nonnegative().nullish(),
  min_tokens: z.number().int().nonnegative().nullish(),
  ignore_eos: z.boolean().nullish(),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
});
type SimRequest = z.infer<typeof requestSchema>;

function promptTokens(body: SimRequest): number {
  const prompt = body.prompt;
  if (Array.isArray(prompt) && prompt.length > 0 && typeof prompt[0] === "number") return prompt.length;
  if (Array.isArray(prompt) && prompt.length > 0 && Array.isArray(prompt[0])) return prompt[0].length;
  if (prompt !== undefined) return promptTokensOf(Array.isArray(prompt) ? prompt.join(" ") : prompt);
  const text = (body.messages ?? [])
    .map((m) => (typeof m.content === "string" ? m.content : (m.content ?? []).map((part) => part.text ?? "").join(" ")))
    .join(" ");
  return promptTokensOf(text);
}

const vllmError = (message: string, type: string, code: number) => ({ object: "error", message, type, param: null, code });

export function buildSimVllm(options: SimVllmOptions) {
  const app = Fastify({ logger: false });
  const served = options.servedModelName ?? options.model;
  const tokenLatency = options.tokenLatencyMs ?? 5;
  const maxModelLen = options.maxModelLen ?? 32768;
  const kvTokens = options.kvCacheTokens ?? (options.numGpuBlocks ?? 8192) * 16;
  const version = options.version ?? "0.11.0";
  const names = metricNames(version);
  const engine = new SimEngine({
    capacityTokens: kvTokens,
    tokenLatencyMs: tokenLatency,
    slowdownPerRunning: options.loadSlowdown ?? 0.02,
    prefillMsPer1kTokens: options.prefillMsPer1kTokens ?? tokenLatency,
    maxNumSeqs: options.maxNumSeqs ?? 256,
    maxNumBatchedTokens: options.maxNumBatchedTokens ?? 8192,
    onUsage: (usage) => {
      if (options.oomAtUsage !== undefined && usage >= options.oomAtUsage) options.onOutOfMemory?.(usage);
    },
  });
  const served_ = {
    promptTokens: new Histogram(buckets125(maxModelLen)),
    generationTokens: new Histogram(buckets125(maxModelLen)),
    ttft: new Histogram(TTFT_BUCKETS),
    itl: new Histogram(ITL_BUCKETS),
    e2e: new Histogram(E2E_BUCKETS),
    success: { length: 0, stop: 0 },
    promptTotal: 0,
    generationTotal: 0,
  };
  let sleeping = false;
  let finished = 0;

  const hang = () => new Promise<never>(() => undefined);
  const notSleeping = (reply: { code: (c: number) => unknown }) => {
    if (!sleeping) return true;
    reply.code(503);
    return false;
  };

  app.get("/health", async (_request, reply) => {
    if (options.failure?.healthHang) return hang();
    if (options.failure?.engineDead) return reply.code(503).send();
    return reply.code(200).send();
  });
  app.get("/version", () => ({ version }));
  app.get("/v1/models", () => ({
    object: "list",
    data: [
      {
        id: served,
        object: "model",
        created: 1_700_000_000,
        owned_by: "vllm",
        root: options.model,
        parent: null,
        max_model_len: maxModelLen,
        permission: [],
      },
    ],
  }));
  if (options.sleepMode !== false) {
    app.get("/is_sleeping", () => ({ is_sleeping: sleeping }));
    app.post("/sleep", async () => {
      sleeping = true;
      await options.onSleepChange?.(true);
      return {};
    });
    app.post("/wake_up", async () => {
      sleeping = false;
      await options.onSleepChange?.(false);
      return {};
    });
  }
  app.get("/metrics", (_request, reply) => {
    const blocks = options.numGpuBlocks ?? Math.ceil(kvTokens / 16);
    const info = `block_size="16",cache_dtype="auto",gpu_memory_utilization="${options.gpuMemoryUtilization}",num_gpu_blocks="${blocks}",swap_space="4"`;
    const labels = `engine="0",model_name="${served}"`;
    const stats = engine.stats();
    const gauge = (name: string, help: string, value: number): Family => ({
      name,
      type: "gauge",
      help,
      lines: [`${name}{${labels}} ${float(value)}`],
    });
    // prometheus_client names a counter's HELP and TYPE after its _total sample in this format.
    const counter = (name: string, help: string, value: number): Family => ({
      name: `${name}_total`,
      type: "counter",
      help,
      lines: [`${name}_total{${labels}} ${float(value)}`],
    });
    const histogram = (name: string, help: string, h: Histogram): Family => ({
      name,
      type: "histogram",
      help,
      lines: h.lines(name, labels),
    });
    const families: Family[] = [
      {
        name: "vllm:cache_config_info",
        type: "gauge",
        help: "Information of the LLMEngine CacheConfig",
        lines: [`vllm:cache_config_info{${info},engine="0"} 1.0`],
      },
      gauge("vllm:num_requests_running", "Number of requests in model execution batches.", stats.running),
      gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.", stats.waiting),
      ...(names.oldNames ? [gauge("vllm:gpu_cache_usage_perc", "GPU KV-cache usage. 1 means 100 percent usage.", stats.usage)] : []),
      ...(names.newNames ? [gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", stats.usage)] : []),
      counter("vllm:num_preemptions", "Cumulative number of preemption from the engine.", stats.preemptions),
      counter("vllm:prompt_tokens", "Number of prefill tokens processed.", served_.promptTotal),
      counter("vllm:generation_tokens", "Number of generation tokens processed.", served_.generationTotal),
      {
        name: "vllm:request_success_total",
        type: "counter",
        help: "Count of successfully processed requests.",
        lines: (["length", "stop"] as const).map(
          (reason) =>
            `vllm:request_success_total{engine="0",finished_reason="${reason}",model_name="${served}"} ${float(served_.success[reason])}`,
        ),
      },
      histogram("vllm:request_prompt_tokens", "Number of prefill tokens processed.", served_.promptTokens),
      histogram("vllm:request_generation_tokens", "Number of generation tokens processed.", served_.generationTokens),
      histogram("vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.", served_.ttft),
      ...(names.oldNames
        ? [histogram("vllm:time_per_output_token_seconds", "Histogram of time per output token in seconds.", served_.itl)]
        : []),
      ...(names.newNames
        ? [histogram("vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.", served_.itl)]
        : []),
      histogram("vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.", served_.e2e),
    ];
    return reply.type("text/plain; version=0.0.4; charset=utf-8").send(render(families));
  });

  const generate = async (request: { body: unknown }, reply: import("fastify").FastifyReply, chat: boolean) => {
    if (!notSleeping(reply)) return { error: { message: "the engine is sleeping", type: "ServiceUnavailable", code: 503 } };
    if (options.failure?.completionHang) return hang();
    const parsed = requestSchema.safeParse(request.body ?? {});
    if (!parsed.success) {
      reply.code(400);
      return vllmError(
        `invalid request: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`,
        "BadRequestError",
        400,
      );
    }
    const body = parsed.data;
    if (body.model === undefined && options.requireModel) {
      reply.code(404);
      return vllmError("The model `None` does not exist.", "NotFoundError", 404);
    }
    if (body.model !== undefined && body.model !== served) {
      reply.code(404);
      return vllmError(`The model \`${body.model}\` does not exist.`, "NotFoundError", 404);
    }
    const prompt = promptTokens(body);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? 16;
    if (prompt + maxTokens > maxModelLen) {
      // vLLM's own text (vllm/entrypoints/openai/serving_engine.py _validate_input).
      reply.code(400);
      return vllmError(
        `This model's maximum context length is ${maxModelLen} tokens. However, you requested ${prompt + maxTokens} tokens (${prompt} in the messages, ${maxTokens} in the completion). Please reduce the length of the messages or completion.`,
        "BadRequestError",
        400,
      );
    }
    // The model's own answer ends at EOS after eosAfterTokens, unless ignore_eos; min_tokens holds EOS back.
    const natural = options.eosAfterTokens;
    const target =
      natural === undefined || body.ignore_eos === true ? maxTokens : Math.min(maxTokens, Math.max(body.min_tokens ?? 0, natural));
    const finishReason = target < maxTokens ? "stop" : "length";
    const out = Array.from({ length: target }, (_, i) => WORDS[i % WORDS.length] ?? "");
    const usage = { prompt_tokens: prompt, completion_tokens: target, total_tokens: prompt + target };
    const id = `${chat ? "chatcmpl" : "cmpl"}-${Math.random().toString(16).slice(2)}`;
    const created = Math.floor(Date.now() / 1000);
    const abort = new AbortController();
    reply.raw.on("close", () => {
      if (!reply.raw.writableFinished) abort.abort();
    });
    const arrived = performance.now();
    let last = arrived;
    let generated = 0;
    const timed = (emit: (i: number) => void) => () => {
      const now = performance.now();
      if (generated === 0) served_.ttft.observe((now - arrived) / 1000);
      else served_.itl.observe((now - last) / 1000);
      last = now;
      emit(generated);
      generated += 1;
    };
    const account = () => {
      if (abort.signal.aborted || generated < target) return;
      served_.promptTokens.observe(prompt);
      served_.generationTokens.observe(target);
      served_.e2e.observe((performance.now() - arrived) / 1000);
      served_.success[finishReason] += 1;
      served_.promptTotal += prompt;
      served_.generationTotal += target;
    };
    try {
      if (!body.stream) {
        await engine.submit(prompt, target, { onToken: timed(() => undefined) }, abort.signal);
        account();
        const text = out.join("");
        return chat
          ? {
              id,
              object: "chat.completion",
              created,
              model: served,
              choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: finishReason }],
              usage,
            }
          : {
              id,
              object: "text_completion",
              created,
              model: served,
              choices: [{ index: 0, text, logprobs: null, finish_reason: finishReason, stop_reason: null }],
              usage,
            };
      }
      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
      const send = (payload: unknown) => raw.write(`data: ${JSON.stringify(payload)}\n\n`);
      if (chat)
        send({
          id,
          object: "chat.completion.chunk",
          created,
          model: served,
          choices: [{ index: 0, delta: { role: "assistant", content: "" }, finish_reason: null }],
        });
      const emit = (i: number) => {
        const token = out[i] ?? "";
        const done = i === out.length - 1 ? finishReason : null;
        send(
          chat
            ? {
                id,
                object: "chat.completion.chunk",
                created,
                model: served,
                choices: [{ index: 0, delta: { content: token }, finish_reason: done }],
              }
            : {
                id,
                object: "text_completion",
                created,
                model: served,
                choices: [{ index: 0, text: token, logprobs: null, finish_reason: done }],
              },
        );
        if (options.failure?.dropMidStream) {
          raw.destroy();
          abort.abort();
        }
      };
      await engine.submit(prompt, target, { onToken: timed(emit) }, abort.signal);
      account();
      if (abort.signal.aborted) return;
      // OpenAI's and vLLM's last chunk before [DONE] when stream_options.include_usage: no choices, the usage.
      if (body.stream_options?.include_usage === true)
        send({ id, object: chat ? "chat.completion.chunk" : "text_completion", created, model: served, choices: [], usage });
      raw.end("data: [DONE]\n\n");
      return;
    } finally {
      finished += 1;
      options.onCompletion?.(finished);
    }
  };
  app.post("/v1/completions", (request, reply) => generate(request, reply, false));
  app.post("/v1/chat/completions", (request, reply) => generate(request, reply, true));
  return app;
}
