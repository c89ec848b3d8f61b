import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { errnoCode } from "@gpu-canary/errors";
import type { FsOps } from "./fs-ops.ts";

/*
 * `mkdir -p` that says why it failed. Node's recursive mkdir answers ENOENT for any failure under
 * a missing folder — a read-only file system among them — so on ENOENT the folders are made one
 * at a time, and the one that fails throws its own errno (EROFS, EACCES, ENOTDIR, …).
 */

export function makeDirSync(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (error) {
    const parent = dirname(dir);
    if (errnoCode(error) !== "ENOENT" || parent === dir) throw error;
    makeDirSync(parent);
    try {
      mkdirSync(dir);
    } catch (inner) {
      if (errnoCode(inner) !== "EEXIST") throw inner;
    }
  }
}

export async function makeDir(fs: FsOps, dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { recursive: true });
  } catch (error) {
    const parent = dirname(dir);
    if (errnoCode(error) !== "ENOENT" || parent === dir) throw error;
    await makeDir(fs, parent);
    try {
      await fs.mkdir(dir, {});
    } catch (inner) {
      if (errnoCode(inner) !== "EEXIST") throw inner;
    }
  }
}
