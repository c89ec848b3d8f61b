import { constants, promises as fsp } from "node:fs";
import type { BigIntStats, Mode, OpenMode, PathLike } from "node:fs";
import type { FileHandle } from "node:fs/promises";

/**
 * The file-system calls state-file makes, so tests can inject failures (EACCES, EIO, ENOSPC)
 * that root would never see from chmod.
 */
export interface FsOps {
  open(path: PathLike, flags: OpenMode | number, mode?: Mode): Promise<FileHandle>;
  rename(from: PathLike, to: PathLike): Promise<void>;
  link(existing: PathLike, newPath: PathLike): Promise<void>;
  unlink(path: PathLike): Promise<void>;
  lstat(path: PathLike, options: { bigint: true }): Promise<BigIntStats>;
  mkdir(path: PathLike, options: { recursive?: boolean; mode?: Mode }): Promise<string | undefined>;
}

export const nodeFs: FsOps = {
  open: (path, flags, mode) => fsp.open(path, flags, mode),
  rename: (from, to) => fsp.rename(from, to),
  link: (existing, newPath) => fsp.link(existing, newPath),
  unlink: (path) => fsp.unlink(path),
  lstat: (path, options) => fsp.lstat(path, options),
  mkdir: (path, options) => fsp.mkdir(path, options),
};

/** Open for reading without following a symlink and without blocking on a FIFO. */
export const READ_NOFOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
