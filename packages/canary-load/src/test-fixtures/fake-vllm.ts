import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";

export interface CompletionBody {
  model?: string;
  prompt: string;
  max_tokens: number;
  min_tokens?: number;
  ignore_eos?: boolean;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
}

/** What to do with the n-th completion (from 1, calibration included): answer, fail, drop, or hang. */
export type Behaviour =
  | { kind: "answer" }
  | { kind: "fail"; status: number; message: string }
  | { kind: "drop_after"; chunks: number }
  | { kind: "end_after"; chunks: number }
  | { kind: "error_event_after"; chunks: number; message: string }
  | { kind: "hang" };

export interface FakeVllmOptions {
  model?: string;
  /** prompt tokens per word vLLM "counts", plus one for BOS */
  tokensPerWord?: number;
  tokenDelayMs?: number;
  /** send the usage chunk when asked (vLLM ≥ 0.5); off for older servers */
  usageChunk?: boolean;
  /** start each stream with a chunk of empty text, as vLLM does for some models */
  emptyFirstChunk?: boolean;
  behaviour?: (n: number, body: CompletionBody) => Behaviour;
}

/**
 * A loopback server speaking vLLM's streaming /v1/completions closely enough for the load's tests:
 * vLLM's error JSON, usage computed from the prompt's words, and a count of the requests in flight
 * so a test can tell the concurrency reached and never passed.
 */
export async function startFakeVllm(options: FakeVllmOptions = {}) {
  const model = options.model ?? "llm";
  const ratio = options.tokensPerWord ?? 1.25;
  const delay = options.tokenDelayMs ?? 2;
  const state = {
    inFlight: 0,
    peak: 0,
    completions: 0,
    bodies: [] as CompletionBody[],
    modelsAsked: 0,
    authorizations: new Set<string>(),
  };
  const open = new Set<ServerResponse>();

  const error = (res: ServerResponse, status: number, message: string) => {
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ object: "error", message, type: "BadRequestError", param: null, code: status }));
  };

  const completion = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as CompletionBody;
    state.completions += 1;
    state.bodies.push(body);
    if (body.model !== model) return error(res, 404, `The model \`${body.model ?? "None"}\` does not exist.`);
    const behaviour = options.behaviour?.(state.completions, body) ?? { kind: "answer" };
    if (behaviour.kind === "fail") return error(res, behaviour.status, behaviour.message);
    if (behaviour.kind === "hang") return new Promise<void>((resolve) => res.on("close", resolve));
    const promptTokens = Math.round(body.prompt.split(" ").length * ratio) + 1;
    const usage = (n: number) => ({ prompt_tokens: promptTokens, completion_tokens: n, total_tokens: promptTokens + n });
    if (!body.stream) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify({
          id: "cmpl-1",
          object: "text_completion",
          model,
          choices: [{ index: 0, text: " x", finish_reason: "length" }],
          usage: usage(1),
        }),
      );
      return;
    }
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    const send = (payload: unknown) => res.write(`data: ${JSON.stringify(payload)}\n\n`);
    if (options.emptyFirstChunk)
      send({ id: "cmpl-1", object: "text_completion", model, choices: [{ index: 0, text: "", finish_reason: null }] });
    for (let i = 0; i < body.max_tokens; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (res.destroyed) return;
      if (behaviour.kind === "drop_after" && i === behaviour.chunks) {
        res.destroy();
        return;
      }
      if (behaviour.kind === "end_after" && i === behaviour.chunks) {
        res.end();
        return;
      }
      if (behaviour.kind === "error_event_after" && i === behaviour.chunks) {
        send({ error: { message: behaviour.message, type: "InternalServerError", code: 500 } });
        res.end("data: [DONE]\n\n");
        return;
      }
      const last = i === body.max_tokens - 1;
      send({
        id: "cmpl-1",
        object: "text_completion",
        model,
        choices: [{ index: 0, text: " tok", logprobs: null, finish_reason: last ? "length" : null }],
        usage: null,
      });
    }
    if (options.usageChunk !== false && body.stream_options?.include_usage)
      send({ id: "cmpl-1", object: "text_completion", model, choices: [], usage: usage(body.max_tokens) });
    res.end("data: [DONE]\n\n");
  };

  const server = createServer((req, res) => {
    state.authorizations.add(req.headers.authorization ?? "(none)");
    if (req.method === "GET" && req.url === "/v1/models") {
      state.modelsAsked += 1;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ object: "list", data: [{ id: model, object: "model", root: "/models/x", max_model_len: 4096 }] }));
      return;
    }
    if (req.method === "POST" && req.url === "/v1/completions") {
      state.inFlight += 1;
      state.peak = Math.max(state.peak, state.inFlight);
      open.add(res);
      res.on("close", () => {
        state.inFlight -= 1;
        open.delete(res);
      });
      completion(req, res).catch((e: unknown) => {
        res.destroy(e as Error);
      });
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    state,
    async close() {
      for (const res of open) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
