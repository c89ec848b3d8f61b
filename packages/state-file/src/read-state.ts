import { type BigIntStats, lstatSync } from "node:fs";
import { errnoCode, fileSystemProblem, messageOf } from "@gpu-canary/errors";
import type { z } from "zod";
import { StateUnreadableError } from "./errors.ts";
import { type FsOps, READ_NOFOLLOW, nodeFs } from "./fs-ops.ts";

export const DEFAULT_MAX_BYTES = 1024 * 1024;

export interface ReadOptions {
  fs?: FsOps;
  /** what to do when the file is unreadable, e.g. "gpu-canary budget reset --yes --date 20261128" */
  hint?: string;
  maxBytes?: number;
}

export interface RawFile {
  text: string;
  /** identity of the inode that was read, to notice a replacement later */
  ino: bigint;
  mtimeNs: bigint;
  size: bigint;
}

export type RawRead =
  { status: "missing" } | { status: "ok"; file: RawFile } | { status: "unreadable"; error: StateUnreadableError; ageMs: number | null };

export type ReadResult<T> =
  { status: "missing" } | { status: "ok"; value: T; file: RawFile } | { status: "unreadable"; error: StateUnreadableError; text?: string };

const defaultHint = "repair or remove the file by hand; gpu-canary will not guess its content";

/**
 * Read a small state file as it is on disk: never follows a symlink, never blocks on a FIFO,
 * refuses folders and oversized files, and tells "missing" from "unreadable".
 */
export async function readRaw(path: string, options: ReadOptions = {}): Promise<RawRead> {
  const fs = options.fs ?? nodeFs;
  const hint = options.hint ?? defaultHint;
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_BYTES;
  const unreadable = (reason: string, ageMs: number | null, cause?: unknown): RawRead => ({
    status: "unreadable",
    error: new StateUnreadableError(path, reason, hint, cause),
    ageMs,
  });
  let handle;
  try {
    handle = await fs.open(path, READ_NOFOLLOW);
  } catch (error) {
    const problem = openProblem(error, path);
    return problem === null ? { status: "missing" } : { status: "unreadable", error: openError(path, problem, hint, error), ageMs: null };
  }
  try {
    const stats = await handle.stat({ bigint: true });
    const ageMs = ageOf(stats);
    const problem = statsProblem(stats, maxBytes);
    if (problem) return unreadable(problem, ageMs);
    let text: string;
    try {
      text = await handle.readFile({ encoding: "utf8" });
    } catch (error) {
      return unreadable(`cannot be read (${errnoCode(error) ?? String(error)})`, ageMs, error);
    }
    return { status: "ok", file: { text, ino: stats.ino, mtimeNs: stats.mtimeNs, size: stats.size } };
  } finally {
    await handle.close();
  }
}

/** Why an opened path cannot be a state file, or null when it can be read. */
export function statsProblem(stats: BigIntStats, maxBytes: number): string | null {
  if (stats.isDirectory()) return "is a directory, not a file";
  if (!stats.isFile()) return "is not a regular file (a FIFO, socket or device)";
  if (stats.size > BigInt(maxBytes)) return `is ${stats.size} bytes, more than the ${maxBytes} a state file may have`;
  return null;
}

/** Why opening failed, with the file system's fix when the way to the file is at fault; null for "missing". */
export function openProblem(error: unknown, path: string): { reason: string; fix: string | null } | null {
  const code = errnoCode(error);
  if (code === "ENOENT") return null;
  // O_NOFOLLOW says ELOOP for a link at the path itself, the kernel for a loop above it: only lstat tells which.
  if (code === "ELOOP" && isLink(path)) return { reason: "is a symbolic link; state files are never followed through links", fix: null };
  const problem = fileSystemProblem(code, path);
  if (problem) return { reason: `cannot be opened: ${problem.reason}`, fix: problem.fix };
  return { reason: `cannot be opened (${code ?? String(error)})`, fix: null };
}

export function openError(
  path: string,
  problem: { reason: string; fix: string | null },
  hint: string,
  cause: unknown,
): StateUnreadableError {
  return new StateUnreadableError(path, problem.reason, problem.fix ?? hint, cause, problem.fix !== null);
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function ageOf(stats: BigIntStats): number {
  return Date.now() - Number(stats.mtimeMs);
}

/** Parse a state file's text as JSON and check it against `schema`; the reason names what is wrong. */
export function parseState<T>(text: string, schema: z.ZodType<T>): { ok: true; value: T } | { ok: false; reason: string } {
  if (text.trim() === "") return { ok: false, reason: "is empty" };
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { ok: false, reason: `is not valid JSON (${messageOf(error)})` };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const what = issue?.message ?? "does not match the expected format";
    if (issue && issue.path.length > 0) return { ok: false, reason: `has an invalid ${issue.path.join(".")}: ${what}` };
    return { ok: false, reason: `is not the expected document: ${what}` };
  }
  return { ok: true, value: parsed.data };
}

/** Read and validate a JSON state file; "unreadable" carries an error that names the file and the fix. */
export async function readJsonState<T>(path: string, schema: z.ZodType<T>, options: ReadOptions = {}): Promise<ReadResult<T>> {
  const raw = await readRaw(path, options);
  if (raw.status !== "ok") return raw.status === "missing" ? raw : { status: "unreadable", error: raw.error };
  const parsed = parseState(raw.file.text, schema);
  if (!parsed.ok) {
    return { status: "unreadable", error: new StateUnreadableError(path, parsed.reason, options.hint ?? defaultHint), text: raw.file.text };
  }
  return { status: "ok", value: parsed.value, file: raw.file };
}

/** Like readJsonState, but an unreadable file throws (fail closed); missing is `undefined`. */
export async function loadJsonState<T>(path: string, schema: z.ZodType<T>, options: ReadOptions = {}): Promise<T | undefined> {
  const result = await readJsonState(path, schema, options);
  if (result.status === "unreadable") throw result.error;
  return result.status === "ok" ? result.value : undefined;
}
