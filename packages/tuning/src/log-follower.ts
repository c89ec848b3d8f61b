import { type ChildProcess, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { type FileHandle, open, stat } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";
import { setTimeout as sleep } from "node:timers/promises";
import type { LogSource } from "@gpu-canary/config";
import { errnoCode } from "@gpu-canary/errors";
import { readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import { splitCommand } from "@gpu-canary/vllm-control";
import * as z from "zod";

export interface FollowOptions {
  source: LogSource;
  /** the systemd unit, for the journal source */
  unit: string;
  /** where the follower keeps its place: `<stateDir>/vllm_log.offset.json`, `<stateDir>/vllm_log.cursor` */
  stateDir: string;
  onLine: (line: string) => Promise<void> | void;
  onError: (message: string) => void;
  /**
   * A file source is open and read from `offset` on (its end, or the saved place): lines appended
   * from now on are seen. Called once, at the first open.
   */
  onFollowing?: (where: { path: string; offset: number }) => void;
  signal: AbortSignal;
  pollMs?: number;
  journalctl?: string;
  env?: Record<string, string>;
}

const offsetSchema = z.object({ path: z.string(), ino: z.number(), offset: z.number().int().nonnegative() });
const MAX_LINE = 64 * 1024;

/** Split a growing text into complete lines, keeping the unfinished tail. */
function lineSplitter(onLine: (line: string) => Promise<void> | void) {
  let rest = "";
  return async (chunk: string) => {
    rest += chunk;
    const lines = rest.split("\n");
    rest = lines.pop() ?? "";
    // A line without an end that grows past the limit is cut rather than held forever.
    if (rest.length > MAX_LINE) {
      lines.push(rest);
      rest = "";
    }
    for (const line of lines) await onLine(line);
  };
}

/**
 * Follow vLLM's log until the signal aborts: a file like `tail -F` (appends, truncation,
 * rotation; resuming from the saved offset), the journal (`journalctl -u UNIT -f -o cat`,
 * resuming from its cursor file), or a command's output (restarted when it ends).
 */
export async function followLog(options: FollowOptions): Promise<void> {
  if (options.source.kind === "file") return followFile(options.source.path, options);
  const argv =
    options.source.kind === "journal"
      ? [options.journalctl ?? "journalctl", ...journalArgs(options)]
      : splitCommand(options.source.command, "KLR_VLLM_LOG");
  return followCommand(argv, options);
}

function journalArgs(options: FollowOptions): string[] {
  const cursor = `${options.stateDir}/vllm_log.cursor`;
  // Without a saved place, start at the end: old failures are not news.
  return ["-u", options.unit, "-f", "-o", "cat", "--cursor-file", cursor, ...(existsSync(cursor) ? [] : ["-n", "0"])];
}

async function followCommand(argv: string[], options: FollowOptions): Promise<void> {
  let backoff = 500;
  while (!options.signal.aborted) {
    const [file, ...args] = argv as [string, ...string[]];
    let chain = Promise.resolve();
    const child: ChildProcess = spawn(file, args, { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...options.env } });
    // Each stream its own decoder and lines: a character split across two reads stays whole, and
    // stderr's half line never joins stdout's.
    const pusher = () => {
      const feed = lineSplitter(options.onLine);
      const decoder = new StringDecoder("utf8");
      return (chunk: Buffer) => {
        const text = decoder.write(chunk);
        chain = chain.then(() => feed(text)).catch((error: unknown) => options.onError(String(error)));
      };
    };
    child.stdout?.on("data", pusher());
    child.stderr?.on("data", pusher());
    const stop = () => child.kill("SIGTERM");
    options.signal.addEventListener("abort", stop, { once: true });
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => {
      child.once("error", (error) => {
        options.onError(`${file}: ${error.message}`);
        resolve(-1);
      });
      child.once("close", resolve);
    });
    options.signal.removeEventListener("abort", stop);
    await chain;
    if (options.signal.aborted) return;
    options.onError(`${argv.join(" ")} ended (exit ${String(code)}); following again in ${backoff} ms`);
    await sleep(backoff, undefined, { signal: options.signal }).catch(() => undefined);
    backoff = Date.now() - started > 60_000 ? 500 : Math.min(backoff * 2, 30_000);
  }
}

async function followFile(path: string, options: FollowOptions): Promise<void> {
  const statePath = `${options.stateDir}/vllm_log.offset.json`;
  const pollMs = options.pollMs ?? 250;
  const feed = lineSplitter(options.onLine);
  // One decoder for the file being read (a new one for a new file): a multi-byte character split
  // across two reads is not garbled.
  let decoder = new StringDecoder("utf8");
  let handle: FileHandle | null = null;
  let ino = -1;
  let offset = 0;
  let saved = "";

  const saved0 = await readJsonState(statePath, offsetSchema);
  const resume = saved0.status === "ok" && saved0.value.path === path ? saved0.value : null;

  const openCurrent = async (first: boolean): Promise<boolean> => {
    try {
      const h = await open(path, "r");
      const s = await h.stat();
      handle = h;
      ino = s.ino;
      decoder = new StringDecoder("utf8");
      // First open: resume where we stopped if it is the same file, else start at its end.
      offset = first ? (resume && resume.ino === s.ino && resume.offset <= s.size ? resume.offset : s.size) : 0;
      if (first) options.onFollowing?.({ path, offset });
      return true;
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") options.onError(`cannot open ${path}: ${errnoCode(error) ?? String(error)}`);
      return false;
    }
  };

  const drain = async () => {
    if (!handle) return;
    const buffer = Buffer.alloc(64 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) return;
      offset += bytesRead;
      await feed(decoder.write(buffer.subarray(0, bytesRead)));
    }
  };

  const save = async () => {
    const text = JSON.stringify({ path, ino, offset });
    if (text === saved) return;
    await writeJsonAtomic(statePath, { path, ino, offset });
    saved = text;
  };

  let first = true;
  try {
    while (!options.signal.aborted) {
      if (!handle) {
        if (await openCurrent(first)) first = false;
      }
      if (handle) {
        const h: FileHandle = handle;
        const current = await stat(path).catch(() => null);
        const size = (await h.stat()).size;
        if (size < offset) {
          offset = 0; // truncated in place (copytruncate)
          decoder = new StringDecoder("utf8");
        }
        await drain();
        if (current && current.ino !== ino) {
          // Rotated: the old file was read to its end above; the new one is read from its start.
          await h.close();
          handle = null;
          if (await openCurrent(false)) await drain();
        }
        await save().catch((error: unknown) => options.onError(`cannot save the log offset: ${String(error)}`));
      }
      await sleep(pollMs, undefined, { signal: options.signal }).catch(() => undefined);
    }
  } finally {
    await (handle as FileHandle | null)?.close();
  }
}
