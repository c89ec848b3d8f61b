/**
 * Every expected failure in gpu-canary is a GpuCanaryError: a stable `code` that callers
 * branch on, a message that says what is wrong (with the numbers or the file), and a hint
 * that says what to do. The CLI maps `kind` to an exit code in one table; the daemon maps
 * it to an HTTP status in one handler.
 */
export type ErrorKind =
  /** bad flags, settings or input: exit 2 */
  | "usage"
  /** a safety gate said no: exit 3 */
  | "refused"
  /** needs an operator (unreadable state, production down, tool missing): exit 4 */
  | "fault";

export interface GpuCanaryErrorOptions {
  hint?: string;
  kind?: ErrorKind;
  cause?: unknown;
  details?: Record<string, unknown>;
  /** overrides the kind's exit code, e.g. 128 + a signal's number after an interruption */
  exitCode?: number;
}

export class GpuCanaryError extends Error {
  readonly code: string;
  readonly hint: string;
  readonly kind: ErrorKind;
  readonly details: Record<string, unknown>;
  readonly exitCode: number;

  constructor(code: string, message: string, options: GpuCanaryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GpuCanaryError";
    this.code = code;
    this.hint = options.hint ?? "";
    this.kind = options.kind ?? "fault";
    this.details = options.details ?? {};
    this.exitCode = options.exitCode ?? exitCodeOf(this.kind);
  }

  toJSON(): { code: string; message: string; hint: string } {
    return { code: this.code, message: this.message, hint: this.hint };
  }
}

export function isGpuCanaryError(value: unknown): value is GpuCanaryError {
  return value instanceof GpuCanaryError;
}

/** The exit codes of the command-line contract (docs/architecture.md, "Exit codes"). */
export const EXIT = {
  ok: 0,
  notPassed: 1,
  usage: 2,
  refused: 3,
  fault: 4,
} as const;

export function exitCodeOf(kind: ErrorKind): number {
  switch (kind) {
    case "usage":
      return EXIT.usage;
    case "refused":
      return EXIT.refused;
    case "fault":
      return EXIT.fault;
  }
}

/** What went wrong, as text: an Error's message, anything else thrown as a string. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The errno code of a Node system error, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === "object" && error !== null && "code" in error) {
    const code = error.code;
    return typeof code === "string" ? code : undefined;
  }
  return undefined;
}

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGTERM: 15 };

/** The shell's exit code for a process ended by a signal: 128 + its number. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (SIGNAL_NUMBERS[signal] ?? 0);
}

/** Work stopped by SIGINT/SIGTERM after cleaning up; exits 128 + the signal's number. */
export class InterruptedError extends GpuCanaryError {
  readonly signal: NodeJS.Signals;

  constructor(signal: NodeJS.Signals, what: string) {
    super("INTERRUPTED", `${what} was interrupted by ${signal}`, { kind: "fault", exitCode: signalExitCode(signal), details: { signal } });
    this.signal = signal;
  }
}

export { fileSystemProblem } from "./file-system.ts";
export type { FileSystemProblem } from "./file-system.ts";
