import { EXIT, GpuCanaryError, messageOf } from "@gpu-canary/errors";
import type { GlobalOptions, Io } from "./io.ts";

/** Print a command's answer: one JSON document with --json, short text without. */
export function answer(io: Io, options: GlobalOptions, json: unknown, text: () => string): void {
  if (options.json) io.stdout(`${JSON.stringify(json, null, 2)}\n`);
  else io.stdout(text().replace(/\n?$/, "\n"));
}

/** Report an error and give the exit code; no stack trace unless --debug. */
export function reportError(io: Io, options: GlobalOptions, error: unknown): number {
  if (error instanceof GpuCanaryError) {
    if (options.json) io.stdout(`${JSON.stringify({ error: error.toJSON() }, null, 2)}\n`);
    else io.stderr(`error: ${error.message}\n${error.hint ? `hint: ${error.hint}\n` : ""}`);
    if (options.debug && error.stack) io.stderr(`${error.stack}\n`);
    return error.exitCode;
  }
  const message = messageOf(error);
  const body = {
    code: "INTERNAL",
    message: `unexpected error: ${message}`,
    hint: "this is a bug in gpu-canary; run again with --debug and report the stack trace",
  };
  if (options.json) io.stdout(`${JSON.stringify({ error: body }, null, 2)}\n`);
  else io.stderr(`error: ${body.message}\nhint: ${body.hint}\n`);
  if (options.debug && error instanceof Error && error.stack) io.stderr(`${error.stack}\n`);
  return EXIT.fault;
}

export function usageError(message: string, hint: string): GpuCanaryError {
  return new GpuCanaryError("USAGE", message, { kind: "usage", hint });
}

/** A duration for people: 18h20m, 4m05s, 12.3s. */
export function humanDuration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds * 10) / 10}s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s).padStart(2, "0")}s`;
}

/** An instant as the JSON contract wants it: ISO 8601 UTC with Z, no milliseconds when they are zero. */
export function isoUtc(date: Date): string {
  return date.toISOString().replace(".000Z", "Z");
}

/**
 * Text from the outside world (a log line) made safe for a terminal: control characters —
 * the ESC that starts a CSI or OSC sequence among them — are shown as \u escapes, never sent.
 */
export function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
