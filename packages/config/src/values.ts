import { IANAZone } from "luxon";
import { splitArguments } from "./arguments.ts";

/**
 * Parsers for one setting's text. Each rejects with "expected …" so the final message reads
 * "KLR_CANARY_PORT: expected a port number 1-65535, got \"abc\"".
 */
type Parse<T> = (text: string) => { ok: true; value: T } | { ok: false; expected: string };

/**
 * One setting's schema: zod's `safeParse` answer, without zod. Every command reads its settings
 * first, and importing zod was a fifth of `gpu-canary window`'s cold start (README, Benchmarks).
 */
export interface SettingSchema<T> {
  safeParse(text: string): { success: true; data: T } | { success: false; error: { issues: { message: string }[] } };
}

export function fromParse<T>(parse: Parse<T>): SettingSchema<T> {
  return {
    safeParse(raw) {
      const result = parse(raw.trim());
      return result.ok
        ? { success: true, data: result.value }
        : { success: false, error: { issues: [{ message: `expected ${result.expected}` }] } };
    },
  };
}

export interface NumberRule {
  min?: number;
  max?: number;
  /** the minimum itself is not allowed */
  above?: number;
  integer?: boolean;
  expected: string;
}

export function parseNumber(text: string, rule: NumberRule): { ok: true; value: number } | { ok: false; expected: string } {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(text)) return { ok: false, expected: rule.expected };
  const value = Number(text);
  const bad =
    !Number.isFinite(value) ||
    (rule.integer === true && !Number.isInteger(value)) ||
    (rule.min !== undefined && value < rule.min) ||
    (rule.max !== undefined && value > rule.max) ||
    (rule.above !== undefined && value <= rule.above);
  return bad ? { ok: false, expected: rule.expected } : { ok: true, value };
}

export const number = (rule: NumberRule) => fromParse((text) => parseNumber(text, rule));

export const boolean = () =>
  fromParse((text) => {
    const lower = text.toLowerCase();
    if (["true", "1", "yes"].includes(lower)) return { ok: true, value: true };
    if (["false", "0", "no"].includes(lower)) return { ok: true, value: false };
    return { ok: false, expected: "true/false, 1/0 or yes/no" };
  });

export const oneOf = <const T extends readonly string[]>(choices: T) =>
  fromParse<T[number]>((text) =>
    (choices as readonly string[]).includes(text) ? { ok: true, value: text } : { ok: false, expected: `one of ${choices.join(", ")}` },
  );

export const text = (expected = "a non-empty value") =>
  fromParse((value) => (value === "" ? { ok: false, expected } : { ok: true, value }));

/** A command line gpu-canary splits and runs itself (no shell): kept as text, refused at load unless it splits cleanly. */
export const argumentText = (expected = "a non-empty command line") =>
  fromParse((value) => {
    if (value === "") return { ok: false, expected };
    const split = splitArguments(value);
    return split.ok ? { ok: true, value } : split;
  });

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `NAME=value …` split like a shell splits it (quotes for spaces), for an environment gpu-canary
 * passes on itself: each word must assign a variable, and nothing else a shell would do is allowed.
 */
export function parseEnvAssignments(value: string): { ok: true; value: Record<string, string> } | { ok: false; expected: string } {
  const expected = "NAME=value pairs separated by spaces, such as VLLM_USE_V1=0 VLLM_LOGGING_LEVEL=DEBUG";
  const split = splitArguments(value);
  if (!split.ok) return split;
  const env: Record<string, string> = {};
  for (const word of split.value) {
    const at = word.indexOf("=");
    const name = at < 0 ? word : word.slice(0, at);
    if (at < 0 || !ENV_NAME.test(name)) return { ok: false, expected: `${expected} (not an assignment: ${word})` };
    env[name] = word.slice(at + 1);
  }
  return Object.keys(env).length > 0 ? { ok: true, value: env } : { ok: false, expected };
}

export const envAssignments = () => fromParse(parseEnvAssignments);

export const timeZone = () =>
  fromParse((value) =>
    IANAZone.isValidZone(value) ? { ok: true, value } : { ok: false, expected: "an IANA time zone such as America/New_York or UTC" },
  );

export interface ClockTime {
  hour: number;
  minute: number;
}

export interface WindowSpec {
  start: ClockTime;
  end: ClockTime;
  /** as written, e.g. "23:00-02:00" */
  text: string;
}

const clock = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** `HH:MM-HH:MM`, 24-hour local times; an end at or before the start wraps past midnight. */
export function parseWindowSpec(value: string): { ok: true; value: WindowSpec } | { ok: false; expected: string } {
  const expected = "HH:MM-HH:MM in 24-hour time, such as 03:00-07:00 or 23:00-02:00 (start and end must differ)";
  const [startText, endText, ...rest] = value.split("-").map((part) => part.trim());
  const start = startText === undefined ? null : clock.exec(startText);
  const end = endText === undefined ? null : clock.exec(endText);
  if (rest.length > 0 || !start || !end) return { ok: false, expected };
  const window = {
    start: { hour: Number(start[1]), minute: Number(start[2]) },
    end: { hour: Number(end[1]), minute: Number(end[2]) },
    text: `${startText}-${endText}`,
  };
  if (window.start.hour === window.end.hour && window.start.minute === window.end.minute) return { ok: false, expected };
  return { ok: true, value: window };
}

export const windowSpec = () => fromParse(parseWindowSpec);

export const httpUrl = () =>
  fromParse((value) => {
    try {
      const url = new URL(value);
      if ((url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "")
        return { ok: true, value: value.replace(/\/+$/, "") };
    } catch {
      // reported below
    }
    return { ok: false, expected: "an http:// or https:// URL such as http://127.0.0.1:8000" };
  });

/** A PostgreSQL connection URL (postgres:// or postgresql://, with a host); kept as given for pg. */
export const postgresUrl = () =>
  fromParse((value) => {
    try {
      const url = new URL(value);
      if ((url.protocol === "postgres:" || url.protocol === "postgresql:") && url.hostname !== "") return { ok: true, value };
    } catch {
      // reported below
    }
    return { ok: false, expected: "a postgres:// or postgresql:// URL such as postgres://gpu_canary@db.example:5432/gpu_canary" };
  });

/** A URL's password replaced by ********, whatever else is wrong with the text. */
export function redactUrlPassword(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*):[^@/?#]*@/i, "$1:********@");
}

const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export const hostId = () =>
  fromParse((value) =>
    HOST_ID.test(value) ? { ok: true, value } : { ok: false, expected: "a host name of letters, digits, '.', '_' and '-' (at most 253)" },
  );

/** The port a URL talks to, the scheme's default when it names none. */
export function portOfUrl(value: string): number {
  const url = new URL(value);
  if (url.port !== "") return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

export interface ListenAddress {
  host: string;
  port: number;
}

export const listenAddress = () =>
  fromParse<ListenAddress>((value) => {
    const expected = "HOST:PORT such as 127.0.0.1:9012 or [::1]:9012";
    const match = /^(\[[0-9a-fA-F:.]+\]|[^:\s[\]]+):(\d{1,5})$/.exec(value);
    if (!match?.[1] || !match[2]) return { ok: false, expected };
    const port = Number(match[2]);
    if (port > 65535) return { ok: false, expected };
    return { ok: true, value: { host: match[1].replace(/^\[|\]$/g, ""), port } };
  });

const SUBSYSTEM = /^[a-z][a-z0-9_-]{0,63}$/;

export const subsystemList = () =>
  fromParse<string[]>((value) => {
    const names = value
      .split(",")
      .map((name) => name.trim())
      .filter((name) => name !== "");
    const expected = "a comma-separated list of names (lower case letters, digits, _ and -), such as gpu_allocation";
    if (names.length === 0 || !names.every((name) => SUBSYSTEM.test(name))) return { ok: false, expected };
    return { ok: true, value: [...new Set(names)] };
  });

export type LogSource = { kind: "journal" } | { kind: "file"; path: string } | { kind: "command"; command: string };

export const logSource = () =>
  fromParse<LogSource>((value) => {
    if (value === "journal") return { ok: true, value: { kind: "journal" } };
    if (value.startsWith("command:")) {
      const command = value.slice("command:".length).trim();
      if (command === "") return { ok: false, expected: "a command after command:, such as command:docker logs -f vllm" };
      const split = splitArguments(command);
      return split.ok ? { ok: true, value: { kind: "command", command } } : split;
    }
    if (value.startsWith("/")) return { ok: true, value: { kind: "file", path: value } };
    return { ok: false, expected: "journal, an absolute file path, or command:… (e.g. command:docker logs -f vllm)" };
  });

export const absolutePath = () =>
  fromParse((value) => (value.startsWith("/") ? { ok: true, value } : { ok: false, expected: "an absolute path" }));

export const vllmVersion = () =>
  fromParse((value) =>
    /^v?\d+\.\d+(\.\d+)?([.+-]?[0-9A-Za-z.+-]*)$/.test(value)
      ? { ok: true, value: value.replace(/^v/, "") }
      : { ok: false, expected: "a vLLM version such as 0.11.0 or 0.6.3.post1" },
  );

/** Whisper sizes a candidate may name; `none` means no Whisper on this GPU. */
export const WHISPER_SIZES = ["none", "tiny", "base", "small", "medium", "large", "large-v2", "large-v3", "turbo"] as const;
export type WhisperSize = (typeof WHISPER_SIZES)[number];
