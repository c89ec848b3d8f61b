import Fastify from "fastify";

/**
 * An OpenAI-compatible server that speaks vLLM's formats (vllm/entrypoints/openai), for tests
 * and the demo: /health, /v1/models, /version, /v1/completions and /v1/chat/completions (plain
 * and streamed as server-sent events ending in `data: [DONE]`), /metrics with vllm:* names
 * including vllm:cache_config_info, and the sleep-mode endpoints. Failure modes make the
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
  /** per generated token */
  tokenLatencyMs?: number;
  numGpuBlocks?: number;
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

const WORDS = ["The", " canary", " sings", " while", " production", " keeps", " serving", "."];

export function buildSimVllm(options: SimVllmOptions) {
  const app = Fastify({ logger: false });
  const served = options.servedModelName ?? options.model;
  const tokenLatency = options.tokenLatencyMs ?? 5;
  let sleeping = false;
  let running = 0;
  let finished = 0;

  const hang = () => new Promise<never>(() => undefined);
  const tokens = (n: number) => Array.from({ length: Math.max(1, n) }, (_, i) => WORDS[i % WORDS.length] ?? "");
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
  app.get("/version", () => ({ version: options.version ?? "0.11.0" }));
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
        max_model_len: options.maxModelLen ?? 32768,
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
    const labels = `block_size="16",cache_dtype="auto",gpu_memory_utilization="${options.gpuMemoryUtilization}",num_gpu_blocks="${options.numGpuBlocks ?? 8192}",swap_space="4"`;
    const body = [
      "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig",
      "# TYPE vllm:cache_config_info gauge",
      `vllm:cache_config_info{${labels},engine="0"} 1.0`,
      "# TYPE vllm:num_requests_running gauge",
      `vllm:num_requests_running{engine="0",model_name="${served}"} ${running}`,
      "# TYPE vllm:kv_cache_usage_perc gauge",
      `vllm:kv_cache_usage_perc{engine="0",model_name="${served}"} ${running > 0 ? 0.01 : 0}`,
      "# TYPE vllm:request_success_total counter",
      `vllm:request_success_total{engine="0",finished_reason="length",model_name="${served}"} ${finished}`,
      "",
    ].join("\n");
    return reply.type("text/plain; version=0.0.4; charset=utf-8").send(body);
  });

  const generate = async (request: { body: unknown }, reply: import("fastify").FastifyReply, chat: boolean) => {
    if (!notSleeping(reply)) return { error: { message: "the engine is sleeping", type: "ServiceUnavailable", code: 503 } };
    if (options.failure?.completionHang) return hang();
    const body = (request.body ?? {}) as { max_tokens?: number; max_completion_tokens?: number; stream?: boolean; model?: string };
    if (body.model === undefined && options.requireModel) {
      reply.code(404);
      return { object: "error", message: "The model `None` does not exist.", type: "NotFoundError", param: null, code: 404 };
    }
    if (body.model !== undefined && body.model !== served) {
      reply.code(404);
      return { object: "error", message: `The model \`${body.model}\` does not exist.`, type: "NotFoundError", param: null, code: 404 };
    }
    const out = tokens(body.max_completion_tokens ?? body.max_tokens ?? 16);
    const id = `${chat ? "chatcmpl" : "cmpl"}-${Math.random().toString(16).slice(2)}`;
    const created = Math.floor(Date.now() / 1000);
    running += 1;
    try {
      if (!body.stream) {
        for (let i = 0; i < out.length; i += 1) await sleepMs(tokenLatency);
        const text = out.join("");
        const usage = { prompt_tokens: 4, completion_tokens: out.length, total_tokens: 4 + out.length };
        return chat
          ? {
              id,
              object: "chat.completion",
              created,
              model: served,
              choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "length" }],
              usage,
            }
          : {
              id,
              object: "text_completion",
              created,
              model: served,
              choices: [{ index: 0, text, logprobs: null, finish_reason: "length", stop_reason: null }],
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
      for (const [i, token] of out.entries()) {
        await sleepMs(tokenLatency);
        const last = i === out.length - 1;
        send(
          chat
            ? {
                id,
                object: "chat.completion.chunk",
                created,
                model: served,
                choices: [{ index: 0, delta: { content: token }, finish_reason: last ? "length" : null }],
              }
            : {
                id,
                object: "text_completion",
                created,
                model: served,
                choices: [{ index: 0, text: token, logprobs: null, finish_reason: last ? "length" : null }],
              },
        );
        if (options.failure?.dropMidStream) {
          raw.destroy();
          return;
        }
      }
      raw.end("data: [DONE]\n\n");
      return;
    } finally {
      running -= 1;
      finished += 1;
      options.onCompletion?.(finished);
    }
  };
  app.post("/v1/completions", (request, reply) => generate(request, reply, false));
  app.post("/v1/chat/completions", (request, reply) => generate(request, reply, true));
  return app;
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
