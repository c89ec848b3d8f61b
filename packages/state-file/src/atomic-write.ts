import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { errnoCode } from "@gpu-canary/errors";
import { StateWriteError } from "./errors.ts";
import { type FsOps, nodeFs } from "./fs-ops.ts";
import { makeDir } from "./make-dir.ts";

export interface AtomicWriteOptions {
  fs?: FsOps;
  /** mode of a new file; an existing file keeps its own */
  mode?: number;
  /** fsync the file and the folder (default true); false keeps only the atomicity of the rename */
  sync?: boolean;
}

/** A unique name in the same folder, so the final rename never crosses a file system. */
export function siblingTempPath(path: string, tag = "tmp"): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.${tag}`);
}

/**
 * Replace `path` with `text` so that a reader, or the file after a crash or power loss,
 * sees the old content or the new, never a mix: temp file in the same folder, write, fsync,
 * rename over the target, fsync the folder (without it the rename may not survive power loss).
 */
export async function writeFileAtomic(path: string, text: string, options: AtomicWriteOptions = {}): Promise<void> {
  const fs = options.fs ?? nodeFs;
  const dir = dirname(path);
  try {
    await makeDir(fs, dir);
    const mode = await existingMode(fs, path, options.mode ?? 0o644);
    const temp = siblingTempPath(path);
    const sync = options.sync ?? true;
    await writeAndSync(fs, temp, text, mode, sync);
    try {
      await fs.rename(temp, path);
    } catch (error) {
      await fs.unlink(temp).catch(() => undefined);
      throw error;
    }
    if (sync) await syncDir(fs, dir);
  } catch (error) {
    throw new StateWriteError(path, error);
  }
}

/** JSON as the checklist's `jq` reads it: two-space indent, one trailing newline. */
export function formatJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function writeJsonAtomic(path: string, value: unknown, options: AtomicWriteOptions = {}): Promise<void> {
  return writeFileAtomic(path, formatJson(value), options);
}

/** Create `path` exclusively with `text`, fsynced unless `sync` is false; removes it again if any step fails. */
export async function writeAndSync(fs: FsOps, path: string, text: string, mode = 0o644, sync = true): Promise<void> {
  const handle = await fs.open(path, "wx", mode);
  try {
    const bytes = Buffer.from(text, "utf8");
    const { bytesWritten } = await handle.write(bytes, 0, bytes.length, 0);
    if (bytesWritten !== bytes.length) {
      throw new Error(`short write: ${bytesWritten} of ${bytes.length} bytes`);
    }
    if (sync) await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await fs.unlink(path).catch(() => undefined);
    throw error;
  }
  await handle.close();
}

export async function syncDir(fs: FsOps, dir: string): Promise<void> {
  const handle = await fs.open(dir, "r");
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems cannot fsync a directory; the rename itself has still happened.
    if (errnoCode(error) !== "EINVAL" && errnoCode(error) !== "ENOTSUP") throw error;
  } finally {
    await handle.close();
  }
}

async function existingMode(fs: FsOps, path: string, fallback: number): Promise<number> {
  try {
    const stats = await fs.lstat(path, { bigint: true });
    return stats.isFile() ? Number(stats.mode & 0o777n) : fallback;
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return fallback;
    throw error;
  }
}
