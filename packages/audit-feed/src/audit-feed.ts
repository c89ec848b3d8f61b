import { open, mkdir, readFile, stat, unlink } from "node:fs/promises";
import { hostname as osHostname } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { GpuCanaryError, errnoCode, fileSystemProblem, messageOf } from "@gpu-canary/errors";
import { DateTime } from "luxon";
import { type AuditEvent, type AuditEventInput, type AuditLine, parseAuditEvent } from "./events.ts";
import { dayFile, dayOf, listDays } from "./files.ts";
import { parseLines } from "./parse-lines.ts";

export interface AuditFeedDeps {
  /** the epochs folder: $KLR_HOME/out/orchestration/epochs */
  dir: string;
  /** day files are named by the date in this zone (the maintenance zone) */
  timeZone: string;
  now?: () => Date;
  host?: string;
  pid?: number;
  /**
   * fsync after each line (default true). Events are few (tens per run) and recovery after a
   * crash reads them, so each is made durable before the step it records goes on.
   */
  fsync?: boolean;
  onWarning?: (message: string) => void;
}

export interface AuditQuery {
  since?: Date;
  /** exclusive */
  until?: Date;
  event?: string;
  runId?: string;
}

export interface FollowOptions {
  /** start at the end of today's file (default) or at its start */
  fromNow?: boolean;
  pollMs?: number;
  signal?: AbortSignal;
}

export interface AuditFeed {
  readonly dir: string;
  append(input: AuditEventInput): Promise<AuditEvent>;
  tail(count: number): Promise<AuditLine[]>;
  query(filter?: AuditQuery): Promise<AuditLine[]>;
  /** new events as they are appended, across the midnight file switch, until the signal aborts */
  follow(options?: FollowOptions): AsyncGenerator<AuditLine>;
  /** remove day files older than `keepDays` days; returns the days removed */
  prune(keepDays: number): Promise<string[]>;
}

/** A line longer than this is refused rather than risking a torn write. */
export const MAX_LINE_BYTES = 64 * 1024;

export class AuditWriteError extends GpuCanaryError {
  /** `cause`: a Node system error is said in plain words, with its fix (full disk, read-only, a folder in the way) */
  constructor(path: string, why: string, cause?: unknown) {
    const problem = fileSystemProblem(errnoCode(cause), path);
    super("AUDIT_WRITE_FAILED", `could not append to the audit trail ${path}: ${problem?.reason ?? why}`, {
      kind: "fault",
      hint: problem?.fix ?? "check the disk space and permissions of the audit folder",
      cause,
      details: { path, ...(problem ? { errno: problem.errno } : {}) },
    });
  }
}

export function createAuditFeed(deps: AuditFeedDeps): AuditFeed {
  const now = deps.now ?? (() => new Date());
  const host = deps.host ?? osHostname();
  const pid = deps.pid ?? process.pid;
  const fsync = deps.fsync ?? true;
  const warn = deps.onWarning ?? (() => undefined);

  /** `mustContain`: a cheap text test that skips lines before JSON parsing (a superset of the matches). */
  const readDay = async (day: string, mustContain?: string): Promise<AuditLine[]> => {
    const path = dayFile(deps.dir, day);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return [];
      throw error;
    }
    if (mustContain !== undefined) {
      text = text
        .split("\n")
        .map((line) => (line.includes(mustContain) ? line : ""))
        .join("\n");
    }
    return parseLines(text, path, warn).events;
  };

  const append = async (input: AuditEventInput): Promise<AuditEvent> => {
    const ts = now();
    const event = parseAuditEvent({ ...input, ts: ts.toISOString(), run_id: input.run_id ?? null, host, pid });
    const line = `${JSON.stringify(event)}\n`;
    const bytes = Buffer.from(line, "utf8");
    const path = dayFile(deps.dir, dayOf(ts, deps.timeZone));
    if (bytes.length > MAX_LINE_BYTES)
      throw new AuditWriteError(path, `the ${event.event} event is ${bytes.length} bytes, over ${MAX_LINE_BYTES}`);
    try {
      await mkdir(deps.dir, { recursive: true });
      // One write() per line on an O_APPEND descriptor: lines from many processes never interleave.
      const handle = await open(path, "a", 0o644);
      try {
        const { bytesWritten } = await handle.write(bytes, 0, bytes.length);
        if (bytesWritten !== bytes.length) throw new Error(`short write: ${bytesWritten} of ${bytes.length} bytes`);
        if (fsync) await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (error) {
      throw new AuditWriteError(path, messageOf(error), error);
    }
    return event;
  };

  const tail = async (count: number): Promise<AuditLine[]> => {
    const days = await listDays(deps.dir);
    const collected: AuditLine[] = [];
    for (let i = days.length - 1; i >= 0 && collected.length < count; i -= 1) {
      const events = await readDay(days[i] ?? "");
      collected.unshift(...events.slice(Math.max(0, events.length - (count - collected.length))));
    }
    return collected;
  };

  const query = async (filter: AuditQuery = {}): Promise<AuditLine[]> => {
    const from = filter.since ? dayOf(filter.since, deps.timeZone) : "00000000";
    const to = filter.until ? dayOf(filter.until, deps.timeZone) : "99999999";
    const since = filter.since?.getTime() ?? -Infinity;
    const until = filter.until?.getTime() ?? Infinity;
    const result: AuditLine[] = [];
    for (const day of await listDays(deps.dir)) {
      if (day < from || day > to) continue;
      for (const event of await readDay(day, filter.event ?? filter.runId)) {
        const t = Date.parse(event.ts);
        if (t < since || t >= until) continue;
        if (filter.event !== undefined && event.event !== filter.event) continue;
        if (filter.runId !== undefined && event.run_id !== filter.runId) continue;
        result.push(event);
      }
    }
    return result;
  };

  async function* follow(options: FollowOptions = {}): AsyncGenerator<AuditLine> {
    const pollMs = options.pollMs ?? 250;
    let day = dayOf(now(), deps.timeZone);
    let offset = options.fromNow === false ? 0 : await sizeOf(dayFile(deps.dir, day));
    let rest = "";
    while (!options.signal?.aborted) {
      const path = dayFile(deps.dir, day);
      const size = await sizeOf(path);
      if (size < offset) {
        offset = 0; // truncated or replaced: read it again from the start
        rest = "";
      }
      if (size > offset) {
        const chunk = await readRange(path, offset, size);
        offset = size;
        const parsed = parseLines(rest + chunk, path, warn);
        rest = parsed.rest;
        yield* parsed.events;
        continue;
      }
      const today = dayOf(now(), deps.timeZone);
      if (today !== day) {
        // Midnight in the maintenance zone: the old file is drained, the new one starts at 0.
        day = today;
        offset = 0;
        rest = "";
        continue;
      }
      try {
        await sleep(pollMs, undefined, { signal: options.signal });
      } catch {
        return;
      }
    }
  }

  const prune = async (keepDays: number): Promise<string[]> => {
    const oldestKept = DateTime.fromJSDate(now(), { zone: deps.timeZone })
      .minus({ days: keepDays - 1 })
      .toFormat("yyyyLLdd");
    const removed: string[] = [];
    for (const day of await listDays(deps.dir)) {
      if (day >= oldestKept) continue;
      await unlink(dayFile(deps.dir, day));
      removed.push(day);
    }
    return removed;
  };

  return { dir: deps.dir, append, tail, query, follow, prune };
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return 0;
    throw error;
  }
}

async function readRange(path: string, start: number, end: number): Promise<string> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(end - start);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, start);
    return buffer.subarray(0, bytesRead).toString("utf8");
  } finally {
    await handle.close();
  }
}
