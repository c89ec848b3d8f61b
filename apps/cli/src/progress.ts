import type { GlobalOptions, Io } from "./io.ts";
import { isoUtc, printable } from "./output.ts";

/**
 * How a long command (a canary run, a tuning pass, a recovery) shows where it is, on stderr:
 * - "tty": an operator watches a terminal: "… line" for each thing worth saying, as always;
 * - "log": stderr is a pipe, a file or the journal (cron, systemd, `2>&1 | tee`): one line per
 *   step with an ISO 8601 UTC time and the step's phase, so that the log shows where a run is,
 *   and a run killed outright leaves its last phase as the last line;
 * - "none": a terminal that asked for --json or whose stdout is redirected, as before.
 * stdout is never touched: --json stays one JSON document.
 */
export type ProgressStyle = "tty" | "log" | "none";

export function progressStyle(io: Io, options: GlobalOptions): ProgressStyle {
  if (!io.stderrIsTTY) return "log";
  return io.isTTY && !options.json ? "tty" : "none";
}

export interface ProgressSinks {
  onProgress?: (line: string) => void;
  onStep?: (phase: string, line: string | null) => void;
}

/** The evaluator's progress callbacks for `command` ("evaluate", "tune", "recover") in `style`. */
export function progressSinks(io: Io, command: string, style: ProgressStyle): ProgressSinks {
  switch (style) {
    case "none":
      return {};
    case "tty":
      return { onProgress: (line) => io.stderr(`… ${line}\n`) };
    case "log": {
      let phase: string | null = null;
      const log = (text: string) => stamped(io, command, text);
      return {
        onStep: (next, line) => {
          phase = next;
          log(line === null ? next : `${next}: ${line}`);
        },
        // A line between steps belongs to the phase the run is in.
        onProgress: (line) => log(phase === null ? line : `${phase}: ${line}`),
      };
    }
  }
}

/** A log line of `command` outside the evaluator's steps (the start, the end), in the "log" style only. */
export function logLine(io: Io, command: string, style: ProgressStyle, text: string): void {
  if (style === "log") stamped(io, command, text);
}

/** One record a line: text from outside (a canary's last log line) has its newlines and control characters escaped. */
function stamped(io: Io, command: string, text: string): void {
  io.stderr(`${progressStamp(io.now())} ${command}: ${printable(text)}\n`);
}

/** ISO 8601 UTC to the second, as journald and cron mail read it: 2026-12-06T19:40:01Z. */
export function progressStamp(date: Date): string {
  return isoUtc(new Date(Math.floor(date.getTime() / 1000) * 1000));
}
