import { setTimeout as sleep } from "node:timers/promises";
import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { Agent, type Dispatcher, request } from "undici";
import { messageOf } from "@gpu-canary/errors";
import { CALIBRATION_WORDS, tokensPerWord, wordsFor } from "./calibration.ts";
import { CanaryLoadError } from "./errors.ts";
import { type LoadOptions, type LoadSettings, type RequestShape, parseLoadOptions } from "./options.ts";
import { buildPrompt, randomSource } from "./prompt.ts";
import { type LoadTotals, type RequestRecord, type StoppedBy, totalsOf } from "./report.ts";
import { streamRequest } from "./stream-request.ts";
import { completionSchema, errorMessageOf, modelsSchema } from "./vllm-answers.ts";

export interface LoadReport {
  model: string;
  /** vLLM's tokens per word of our prompts: calibrated here, or the one given */
  tokensPerWord: number;
  calibration: { words: number; promptTokens: number } | null;
  asked: { concurrency: number; promptTokens: number; outputTokens: number; durationSeconds: number; extra: RequestShape[] };
  stoppedBy: StoppedBy;
  /** from the first request's start to the last one's end */
  durationMs: number;
  totals: LoadTotals;
  requests: RequestRecord[];
}

/**
 * Drive a vLLM with `concurrency` streamed completions in flight for `durationSeconds`, plus the
 * `extra` requests once each, then wait for those in flight (stopping them at the deadline).
 * Throws only when no load could be started (bad options, no model, calibration failed); once
 * requests run, every failure is in the report.
 */
export async function runLoad(options: LoadOptions): Promise<LoadReport> {
  const settings = parseLoadOptions(options);
  const now = options.now ?? (() => performance.now());
  const calledAt = now();
  const deadlineMs = (settings.deadlineSeconds ?? settings.durationSeconds + 30) * 1000;

  const stop = new AbortController();
  // every request in flight listens to it: not a leak
  setMaxListeners(settings.concurrency + settings.extra.length + 16, stop.signal);
  let stoppedBy: StoppedBy | null = null;
  const halt = (why: StoppedBy, reason?: unknown) => {
    stoppedBy ??= why;
    stop.abort(reason);
  };
  const onSignal = () => halt("signal", options.signal?.reason);
  options.signal?.throwIfAborted();
  options.signal?.addEventListener("abort", onSignal, { once: true });
  const deadlineTimer = setTimeout(() => halt("deadline"), Math.max(0, deadlineMs - (now() - calledAt)));

  const ownAgent = options.dispatcher ? null : new Agent({ headersTimeout: 0, bodyTimeout: 0 });
  const dispatcher: Dispatcher = options.dispatcher ?? (ownAgent as Agent);
  const urlOf = (path: string) => new URL(path, settings.baseUrl).toString();
  const headers: Record<string, string> = { "content-type": "application/json", accept: "application/json, text/event-stream" };
  if (settings.apiKey) headers.authorization = `Bearer ${settings.apiKey}`;

  try {
    const setup = { settings, urlOf, headers, dispatcher, signal: stop.signal, stoppedBy: () => stoppedBy };
    const model = settings.model ?? (await servedModel(setup));
    const random = randomSource(settings.seed ?? Math.floor(Math.random() * 2 ** 32));
    let calibration: LoadReport["calibration"] = null;
    let ratio = settings.tokensPerWord;
    if (ratio === undefined) {
      const promptTokens = await calibrate(setup, model, buildPrompt(CALIBRATION_WORDS, random));
      calibration = { words: CALIBRATION_WORDS, promptTokens };
      ratio = tokensPerWord(CALIBRATION_WORDS, promptTokens);
    }
    const perWord = ratio;

    const records: RequestRecord[] = [];
    const loadStart = now();
    const loadEndsAt = loadStart + settings.durationSeconds * 1000;
    let inFlight = 0;
    let peak = 0;
    const stopReason = () =>
      stoppedBy === "signal" ? "stopped: the load was cancelled" : `stopped: still running at the load's deadline (${deadlineMs / 1000} s)`;

    const completionsUrl = urlOf("/v1/completions");
    const one = async (shape: RequestShape, kind: RequestRecord["kind"]) => {
      const index = records.length;
      const words = wordsFor(shape.promptTokens, perWord);
      const body = {
        model,
        prompt: buildPrompt(words, random),
        max_tokens: shape.outputTokens,
        // the whole asked length, as production's requests run: no early end of sequence
        min_tokens: shape.outputTokens,
        ignore_eos: true,
        stream: true,
        stream_options: { include_usage: true },
      };
      const record: RequestRecord = {
        index,
        kind,
        startedMs: now() - loadStart,
        promptTokensAsked: shape.promptTokens,
        promptWords: words,
        promptTokensSeen: null,
        outputTokensAsked: shape.outputTokens,
        outputTokensSeen: 0,
        ttftMs: null,
        itlMs: [],
        e2eMs: 0,
        failure: null,
      };
      records.push(record);
      inFlight += 1;
      peak = Math.max(peak, inFlight);
      try {
        const outcome = await streamRequest({
          url: completionsUrl,
          headers,
          body,
          signal: stop.signal,
          stopReason,
          dispatcher,
          now,
        });
        record.ttftMs = outcome.ttftMs;
        record.itlMs = outcome.itlMs;
        record.e2eMs = outcome.e2eMs;
        record.promptTokensSeen = outcome.usage?.promptTokens ?? null;
        record.outputTokensSeen = outcome.usage?.completionTokens ?? outcome.textChunks;
        record.failure = outcome.failure;
      } finally {
        inFlight -= 1;
      }
    };

    const mayStart = () => !stop.signal.aborted && records.length < settings.maxRequests;
    const steadyStarted = () => records.filter((r) => r.kind === "steady").length;
    const rampMs = settings.rampUpSeconds * 1000;
    // Resolves early (never rejects) when the load is stopped: nothing starts after that anyway.
    const wait = (ms: number) => (ms > 0 ? sleep(ms, undefined, { signal: stop.signal }).catch(() => undefined) : Promise.resolve());
    let extrasStarting = false;
    const extras = settings.extra.map(async (shape) => {
      await wait(rampMs);
      if (!mayStart()) return;
      if (!extrasStarting) {
        extrasStarting = true;
        options.onExtrasStarting?.();
      }
      await one(shape, "extra");
    });
    const steadyShape = { promptTokens: settings.promptTokens, outputTokens: settings.outputTokens };
    const worker = async (slot: number) => {
      await wait((rampMs * slot) / settings.concurrency);
      while (mayStart() && (now() < loadEndsAt || steadyStarted() < settings.minRequests)) await one(steadyShape, "steady");
    };
    await Promise.all([...extras, ...Array.from({ length: settings.concurrency }, (_, slot) => worker(slot))]);
    const durationMs = now() - loadStart;
    if (stoppedBy === null) stoppedBy = records.length >= settings.maxRequests && now() < loadEndsAt ? "max_requests" : "duration";

    return {
      model,
      tokensPerWord: perWord,
      calibration,
      asked: {
        concurrency: settings.concurrency,
        promptTokens: settings.promptTokens,
        outputTokens: settings.outputTokens,
        durationSeconds: settings.durationSeconds,
        extra: settings.extra,
      },
      stoppedBy,
      durationMs,
      totals: totalsOf(records, durationMs, peak),
      requests: records,
    };
  } finally {
    clearTimeout(deadlineTimer);
    options.signal?.removeEventListener("abort", onSignal);
    await ownAgent?.destroy();
  }
}

interface Setup {
  settings: LoadSettings;
  urlOf: (path: string) => string;
  headers: Record<string, string>;
  dispatcher: Dispatcher;
  signal: AbortSignal;
  stoppedBy: () => StoppedBy | null;
}

/** A GET or POST before the load, bounded by setupTimeoutMs and stopped with the load. */
async function setupCall(setup: Setup, path: string, body: unknown, what: string) {
  const signal = AbortSignal.any([setup.signal, AbortSignal.timeout(setup.settings.setupTimeoutMs)]);
  try {
    const response = await request(setup.urlOf(path), {
      method: body === undefined ? "GET" : "POST",
      headers: setup.headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal,
      dispatcher: setup.dispatcher,
    });
    return { status: response.statusCode, text: await response.body.text() };
  } catch (error) {
    if (setup.signal.aborted && setup.stoppedBy() === "signal") throw setup.signal.reason ?? error;
    const why = signal.aborted
      ? `no answer within ${setup.stoppedBy() === "deadline" ? "the load's deadline" : `${setup.settings.setupTimeoutMs} ms`}`
      : messageOf(error);
    throw new CanaryLoadError("LOAD_UNREACHABLE", `${what}: ${setup.urlOf(path)}: ${why}`, { cause: error });
  }
}

async function servedModel(setup: Setup): Promise<string> {
  const { status, text } = await setupCall(setup, "/v1/models", undefined, "cannot ask the served model");
  if (status !== 200)
    throw new CanaryLoadError("LOAD_NO_MODEL", `GET ${setup.urlOf("/v1/models")} answered ${status}: ${errorMessageOf(text)}`, { status });
  const parsed = parseJson(text, modelsSchema);
  const first = parsed?.data[0]?.id;
  if (!first)
    throw new CanaryLoadError("LOAD_NO_MODEL", `GET ${setup.urlOf("/v1/models")} lists no model (answered: ${text.slice(0, 160)})`);
  return first;
}

async function calibrate(setup: Setup, model: string, prompt: string): Promise<number> {
  const body = { model, prompt, max_tokens: 1, stream: false };
  const url = setup.urlOf("/v1/completions");
  const { status, text } = await setupCall(setup, "/v1/completions", body, "cannot calibrate prompt lengths");
  if (status !== 200)
    throw new CanaryLoadError(
      "LOAD_CALIBRATION_FAILED",
      `the calibration completion (POST ${url}) answered ${status}: ${errorMessageOf(text)}`,
      {
        status,
      },
    );
  const tokens = parseJson(text, completionSchema)?.usage.prompt_tokens;
  if (tokens === undefined || tokens <= 0)
    throw new CanaryLoadError(
      "LOAD_CALIBRATION_FAILED",
      `the calibration completion (POST ${url}) answered without a usable usage.prompt_tokens: ${text.slice(0, 160)}`,
    );
  return tokens;
}

function parseJson<T>(text: string, schema: { safeParse: (v: unknown) => { success: true; data: T } | { success: false } }): T | null {
  try {
    const parsed = schema.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : null;
  } catch {
    return null;
  }
}
