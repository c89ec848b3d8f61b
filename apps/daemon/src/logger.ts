import { fstatSync } from "node:fs";
import { type LoggerOptions, pino } from "pino";

/**
 * Where stderr goes decides how the daemon logs:
 * - a terminal: pino-pretty's lines (time, level, message, fields), for a person running it by hand;
 * - the journal (systemd's JOURNAL_STREAM names stderr): JSON lines led by the syslog priority
 *   (`<4>` for a warning), which journald takes off and keeps, so `journalctl -p warning` filters
 *   and colours them while `journalctl -o cat` still gives plain JSON to jq or pino-pretty;
 * - anything else (a pipe, a file): JSON lines.
 * The JSON reads without pino's tables: `"level":"warn"`, `"time"` in ISO 8601, `"msg"`.
 */
export type LogSink = "pretty" | "journal" | "json";

/** syslog priorities of pino's levels (sd-daemon(3) prefixes) */
const PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

/** pino writes `{"level":"<label>"` first: the priority is read from there without parsing the line. */
const LEVEL_AT_START = /^\{"level":"([a-z]+)"/;

export function logSinkFor(stderr: { fd: number; isTTY?: boolean }, env: Readonly<Record<string, string | undefined>>): LogSink {
  if (stderr.isTTY) return "pretty";
  // systemd.exec(5): JOURNAL_STREAM is "device:inode" of the journal's stream; a process whose
  // stderr was redirected since (a shell's 2>file) has another one.
  const journal = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? "");
  if (journal) {
    try {
      const stat = fstatSync(stderr.fd, { bigint: true });
      if (String(stat.dev) === journal[1] && String(stat.ino) === journal[2]) return "journal";
    } catch {
      // stderr closed: nothing reads the log anyway
    }
  }
  return "json";
}

function journalDestination(fd: number) {
  // sonic-boom underneath: it retries a write the journal's socket is not ready for (EAGAIN).
  const out = pino.destination({ dest: fd, sync: true });
  return {
    write(line: string) {
      const priority = PRIORITY[LEVEL_AT_START.exec(line)?.[1] ?? ""] ?? 6;
      out.write(`<${priority}>${line}`);
    },
    flush(callback?: (error?: Error) => void) {
      out.flush(callback);
    },
  };
}

export async function createDaemonLogger(sink: LogSink, fd = 2): Promise<pino.Logger> {
  const options: LoggerOptions = {
    name: "gpu-canaryd",
    redact: ["req.headers.authorization", "*.token", "token", "*.apiKey", "*.api_key"],
    formatters: { level: (label) => ({ level: label }) },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (sink === "pretty") {
    // Loaded only for a terminal; synchronous, so the last lines before an exit are never lost.
    const { default: pretty } = await import("pino-pretty");
    return pino(options, pretty({ destination: fd, sync: true, translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l o" }));
  }
  if (sink === "journal") return pino(options, journalDestination(fd));
  return pino(options, pino.destination({ dest: fd, sync: true }));
}
