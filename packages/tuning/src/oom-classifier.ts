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

// vLLM's and PyTorch's texts across versions (sources in oom-classifier.test.ts).
const PATTERNS: { kind: OomKind; pattern: RegExp }[] = [
  { kind: "oom_startup_free_memory", pattern: /Free memory on device\b.*\bon startup is less than desired GPU memory utilization/i },
  { kind: "oom_kv_cache", pattern: /No available memory for the cache blocks/i },
  { kind: "oom_max_model_len", pattern: /max seq len \(\d+\) is larger than the maximum number of tokens that can be stored in KV cache/i },
  { kind: "oom_max_model_len", pattern: /To serve at least one request with the models?'s max seq len/i },
  { kind: "oom_runtime", pattern: /CUDA out of memory occurred when warming up/i },
  { kind: "oom_runtime", pattern: /(?:torch\.(?:cuda\.)?OutOfMemoryError|RuntimeError): CUDA out of memory\b/i },
  { kind: "oom_runtime", pattern: /^CUDA out of memory\. Tried to allocate/i },
];

// ANSI colour codes, then the prefixes put before vLLM's own text: journald/syslog, docker
// timestamps, process tags ("(EngineCore_DP0 pid=7476)"), log levels and source locations.
// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

/**
 * vLLM's request logger: `Received request cmpl-…-0: prompt: 'How to make pizza', params: …`
 * (vllm-project/vllm#9023), and with --enable-log-outputs `Generated response …: output: '…'`.
 */
const REQUEST_LOG = /\b(?:Received request|Generated response)\b|\b(?:prompt|output)s?:\s/i;

/** The line without colour codes and surrounding whitespace. */
export function cleanLine(line: string): string {
  return line.replace(ANSI, "").replace(/\r$/, "").trim();
}

/**
 * The kind of out-of-memory failure a vLLM log line reports, or null. Only a line that states
 * the error counts: the source lines of a traceback (`raise ValueError("No available memory …"`)
 * and advice ("if you are running out of memory, consider …") do not.
 */
export function classifyLine(line: string): OomKind | null {
  const text = cleanLine(line);
  if (text.length === 0 || text.length > 8192) return null;
  if (/\braise\s+\w+\(/.test(text) || /^\s*(?:\S+\s+)*File "/.test(text)) return null;
  for (const { kind, pattern } of PATTERNS) {
    const match = pattern.exec(text);
    if (!match) continue;
    // Text inside a logged request or response is a user's, not vLLM's: a prompt quoting an
    // out-of-memory message must never become an intent (in canary mode, a production stop).
    if (REQUEST_LOG.test(text.slice(0, match.index))) return null;
    // The message itself is the error, not a suggestion about one.
    if (/\bif (?:you are )?(?:running )?out[- ]of[- ]memory\b/i.test(text)) return null;
    return kind;
  }
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
