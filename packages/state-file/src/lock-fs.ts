import { closeSync, constants, fstatSync, fsyncSync, openSync, readSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { StateUnreadableError } from "./errors.ts";
import { READ_NOFOLLOW } from "./fs-ops.ts";
import { DEFAULT_MAX_BYTES, type RawRead, openError, openProblem, statsProblem } from "./read-state.ts";

/**
 * Synchronous file calls for the lock's hot path. A lock operation is a handful of metadata
 * calls that take microseconds each; going through the thread pool for each one cost more
 * than the calls themselves (measured by `pnpm bench` in gpu-lock). Nothing here waits on
 * anything but the local file system.
 */

/** Like readRaw, synchronously. */
export function readRawSync(path: string, hint: string, maxBytes = DEFAULT_MAX_BYTES): RawRead {
  let fd: number;
  try {
    fd = openSync(path, READ_NOFOLLOW);
  } catch (error) {
    const problem = openProblem(error, path);
    return problem === null ? { status: "missing" } : { status: "unreadable", error: openError(path, problem, hint, error), ageMs: null };
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    const ageMs = Date.now() - Number(stats.mtimeMs);
    const problem = statsProblem(stats, maxBytes);
    if (problem) return { status: "unreadable", error: new StateUnreadableError(path, problem, hint), ageMs };
    const buffer = Buffer.alloc(Number(stats.size));
    let read = 0;
    while (read < buffer.length) {
      const n = readSync(fd, buffer, read, buffer.length - read, read);
      if (n === 0) break;
      read += n;
    }
    return {
      status: "ok",
      file: { text: buffer.subarray(0, read).toString("utf8"), ino: stats.ino, mtimeNs: stats.mtimeNs, size: BigInt(read) },
    };
  } finally {
    closeSync(fd);
  }
}

/** Create `path` exclusively holding `text`; its identity (inode, mtime, size) for later checks. */
export function createExclusiveSync(path: string, text: string, durable: boolean): { ino: bigint; mtimeNs: bigint; size: bigint } {
  const fd = openSync(path, "wx", 0o644);
  let done = false;
  try {
    const bytes = Buffer.from(text, "utf8");
    const written = writeSync(fd, bytes, 0, bytes.length, 0);
    if (written !== bytes.length) throw new Error(`short write: ${written} of ${bytes.length} bytes`);
    if (durable) fsyncSync(fd);
    const stats = fstatSync(fd, { bigint: true });
    done = true;
    return { ino: stats.ino, mtimeNs: stats.mtimeNs, size: stats.size };
  } finally {
    closeSync(fd);
    if (!done) unlinkSync(path);
  }
}

export function syncDirSync(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } catch {
    // Some file systems cannot fsync a folder; the rename or link itself has happened.
  } finally {
    closeSync(fd);
  }
}

/** Atomically replace `path` with `text` (temp file + rename), synchronously. */
export function replaceFileSync(path: string, temp: string, text: string, durable: boolean): void {
  createExclusiveSync(temp, text, durable);
  try {
    renameSync(temp, path);
  } catch (error) {
    try {
      unlinkSync(temp);
    } catch {
      // already gone
    }
    throw error;
  }
  if (durable) syncDirSync(dirname(path));
}

/**
 * Overwrite a small counter file in place: one pwrite of a fixed-width record at offset 0, so
 * the file never changes length and no rename is needed (renames cost a tenth of a millisecond
 * here, more than the rest of a lock operation). Only the lock holder writes it.
 */
export function writeCounterSync(path: string, text: string, width = 64): void {
  if (text.length > width) throw new Error(`counter record longer than ${width} bytes`);
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_NOFOLLOW, 0o644);
  try {
    const bytes = Buffer.from(text.padEnd(width - 1, " ") + "\n", "utf8");
    writeSync(fd, bytes, 0, bytes.length, 0);
  } finally {
    closeSync(fd);
  }
}
