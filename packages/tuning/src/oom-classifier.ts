import { withRealVllmFlags } from "@gpu-canary/vllm-control";

/** The kinds of memory failure vLLM reports, as intents name them (docs/architecture.md, "Intents"). */
export type OomKind = "oom_runtime" | "oom_kv_cache" | "oom_max_model_len" | "oom_startup_free_memory";

/** Which way each kind asks the memory to move: vLLM's own messages differ. */
export const DIRECTION: Record<OomKind, "more" | "less"> = {
  // "No available memory for the cache blocks": vLLM needs more of the card for its KV cache.
  oom_kv_cache: "more",
  // "max seq len … larger than … KV cache" / "To serve at least one request…": the same.
  oom_max_model_len: "more",
  // A CUDA out-of-memory while serving or warming up: vLLM's budget leaves too little for the rest.
  oom_runtime: "less",
  // "Free memory on device … less than desired": vLLM asks for more than is free beside Whisper.
  oom_startup_free_memory: "less",
};

// vLLM's and PyTorch's texts across versions (sources in oom-classifier.test.ts). Each is matched
// at the start of a record's message, after the exception's name when there is one.
const PATTERNS: { kind: OomKind; pattern: RegExp }[] = [
  { kind: "oom_startup_free_memory", pattern: /^Free memory on device\b.*\bon startup is less than desired GPU memory utilization/i },
  { kind: "oom_kv_cache", pattern: /^No available memory for the cache blocks/i },
  {
    kind: "oom_max_model_len",
    pattern: /^(?:(?:The|This) models?'s )?max seq len \(\d+\) is larger than the maximum number of tokens that can be stored in KV cache/i,
  },
  { kind: "oom_max_model_len", pattern: /^To serve at least one request with the models?'s max seq len/i },
  { kind: "oom_runtime", pattern: /^CUDA out of memory occurred when warming up/i },
  // PyTorch's allocator text, under torch.OutOfMemoryError, torch.cuda.OutOfMemoryError or RuntimeError.
  { kind: "oom_runtime", pattern: /^CUDA out of memory\b/i },
];

// ANSI colour codes, as a terminal-minded logger or a container runtime may add them.
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

/**
 * vLLM's request logger: `Received request cmpl-…-0: prompt: 'How to make pizza', params: …`
 * (vllm-project/vllm#9023), and with --enable-log-outputs `Generated response …: output: '…'`.
 */
const REQUEST_LOG = /\b(?:Received request|Generated response)\b|\b(?:prompt|output)s?:\s/i;

// eslint-disable-next-line no-control-regex
const OSC = /\u001b\][^\u0007\u001b]*(?:\u0007|\u001b\\)?/g;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** The line without colour codes and surrounding whitespace. */
export function cleanLine(line: string): string {
  return line.replace(ANSI, "").replace(/\r$/, "").trim();
}

/**
 * What a log's carrier and vLLM's logger put before a record's message, peeled off one at a time:
 * a docker compose service (`vllm-1  | `); syslog with an RFC 3339 time (rsyslog's default on
 * Debian 12 and Ubuntu 24.04, `journalctl -o short-iso`: `2026-12-02T03:12:09+0000 gpu-host vllm[1234]: `);
 * a container runtime's log file (CRI: `<time> stderr F `); an ISO time (docker --timestamps,
 * `[2026-02-24T20:21:58Z]`); journald's or syslog's short form, to the microsecond with
 * `-o short-precise` (`Nov 28 03:12:09 gpu-host vllm[1234]: `); vLLM's or Ray's process tag
 * (`(EngineCore_DP0 pid=6940) `, `(VllmWorker rank=7 pid=10948) `, `(RayWorkerWrapper pid=5123, ip=10.0.0.2) `,
 * `(pid=5123) `) and vLLM's logger (`ERROR 04-05 01:12:55 [core.py:390] `, older `ERROR 11-18 18:07:28 engine.py:366] `).
 */
const ISO_TIME = String.raw`\d{4}-\d\d-\d\dT[\d:.,]+(?:Z|[+-]\d\d:?\d\d)?`;
const PREFIXES = [
  /^[\w.-]+\s+\|\s+/,
  new RegExp(String.raw`^${ISO_TIME}\s+\S+\s+[^\s:[]+\[\d+\]:\s+`),
  new RegExp(String.raw`^${ISO_TIME}\s+(?:stdout|stderr)\s+[FP]\s+`),
  new RegExp(String.raw`^\[?${ISO_TIME}\]?\s+`),
  /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ [^\s:[]+(?:\[\d+\])?:\s+/,
  /^\((?:[\w.-]+(?=[ )]))?(?:,?\s*[\w.-]+=[\w.:-]+)*\)\s+/,
  /^(?:DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\s+(?:\d\d-\d\d\s+)?(?:\d\d:\d\d:\d\d(?:\.\d+)?\s+)?\[?[\w./-]+(?::\d+)?\]\s*/,
];

/**
 * The exception line of the failures vLLM and PyTorch raise: `ValueError: …`, `RuntimeError: …`,
 * `torch.OutOfMemoryError: …`. Only these: any other class is someone else's words — a chat
 * template a client sent can raise its own (`jinja2.exceptions.TemplateError: No available memory …`).
 */
const EXCEPTION = /^(?:ValueError|RuntimeError|(?:torch\.(?:cuda\.)?)?OutOfMemoryError):\s+/;

/** A record's message: the line without the prefixes its carrier and vLLM's logger put before it. */
export function recordMessage(text: string): string {
  let message = text;
  for (let peeled = true; peeled;) {
    peeled = false;
    for (const prefix of PREFIXES) {
      const match = prefix.exec(message);
      if (match && match[0].length > 0) {
        message = message.slice(match[0].length);
        peeled = true;
      }
    }
  }
  return message;
}

/**
 * The kind of out-of-memory failure a vLLM log line reports, or null. Only vLLM's own record of
 * the error counts: its message (after the log's prefixes and the exception's name) must begin
 * with the failure's text. So text quoted inside a logged request or response — a user's prompt
 * (`Received request …: prompt: '… No available memory for the cache blocks …'`) — never does, nor
 * a traceback's source line (`raise ValueError("No available memory …"`) or advice ("If you are
 * running out of memory, consider …").
 */
export function classifyLine(line: string): OomKind | null {
  const text = cleanLine(line);
  if (text.length === 0 || text.length > 8192) return null;
  // Terminal sequences (an OSC title, stray control characters) say nothing about the record; the
  // event's line keeps them, for observe to show escaped.
  const message = recordMessage(text.replace(OSC, "").replace(CONTROL, "")).replace(EXCEPTION, "");
  for (const { kind, pattern } of PATTERNS) if (pattern.test(message)) return kind;
  return null;
}

/**
 * vLLM's own account of its memory after profiling, with the KV size that would fit
 * (vllm/v1/worker/gpu_worker.py, `compile_or_warm_up_model`; INFO in 0.11, DEBUG later). It comes
 * just before the sampler's warm-up, the step that fails with "CUDA out of memory occurred when
 * warming up sampler": what the intent's reader needs beside the failure.
 */
const MEMORY_ACCOUNT = /Replace gpu_memory_utilization (?:config )?with `?--kv-cache-memory/i;

/** The line as vLLM's memory account, flags named as vLLM accepts them; null when it is none (or a user's text). */
export function memoryAccountOf(line: string): string | null {
  const text = cleanLine(line);
  if (text.length > 8192) return null;
  const match = MEMORY_ACCOUNT.exec(text);
  if (!match || REQUEST_LOG.test(text.slice(0, match.index))) return null;
  return withRealVllmFlags(text);
}

export interface OomEvent {
  kind: OomKind;
  /** the failure's line; a flag vLLM's log misnames is given its real name */
  line: string;
  at: Date;
  /** vLLM's memory account of the same start, when it logged one within ACCOUNT_MAX_AGE_MS before */
  account: string | null;
}

/** A memory account older than this belongs to an earlier start, not to this failure. */
export const ACCOUNT_MAX_AGE_MS = 10 * 60_000;

/**
 * One event per failure, not one per traceback line or tensor-parallel worker: a line of the
 * same kind within `quietMs` of the last one belongs to the same failure.
 */
export function createOomDetector(options: { quietMs?: number; now?: () => Date } = {}) {
  const quietMs = options.quietMs ?? 30_000;
  const now = options.now ?? (() => new Date());
  const last = new Map<OomKind, number>();
  let account: { text: string; at: number } | null = null;
  return {
    feed(line: string): OomEvent | null {
      const kind = classifyLine(line);
      if (kind === null) {
        const text = memoryAccountOf(line);
        if (text !== null) account = { text: text.slice(0, 1500), at: now().getTime() };
        return null;
      }
      const at = now();
      const previous = last.get(kind);
      last.set(kind, at.getTime());
      if (previous !== undefined && at.getTime() - previous < quietMs) return null;
      const recent = account !== null && at.getTime() - account.at <= ACCOUNT_MAX_AGE_MS ? account.text : null;
      // One account per start: the next failure of a later start does not inherit it.
      account = null;
      return { kind, line: withRealVllmFlags(cleanLine(line)).slice(0, 2000), at, account: recent };
    },
  };
}
