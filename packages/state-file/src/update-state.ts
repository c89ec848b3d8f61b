import type { z } from "zod";
import { writeJsonAtomic } from "./atomic-write.ts";
import { type AcquireOptions, withFileLock } from "./file-lock.ts";
import type { FsOps } from "./fs-ops.ts";
import type { ProcessInspector } from "./process-identity.ts";
import { type ReadResult, readJsonState } from "./read-state.ts";

export type UpdateStep<T, A> = { write: T; answer: A } | { answer: A };

export interface UpdateOptions {
  fs?: FsOps;
  inspector?: ProcessInspector;
  hint?: string;
  /** how long to wait for another process's update; default 10 s */
  lockWaitMs?: number;
  signal?: AcquireOptions["signal"];
}

/** The lock beside a state file that serialises its read-modify-write cycles. */
export function updateLockPath(path: string): string {
  return `${path}.lock`;
}

/**
 * Read-modify-write a JSON state file so that any number of processes can do it at once
 * without losing an update: lock, read, decide, write atomically, unlock. `decide` sees
 * "missing", "ok" or "unreadable" and chooses whether to write; what it writes must pass
 * the schema, so nothing is ever written that could not be read back.
 */
export async function updateJsonState<T, A>(
  path: string,
  schema: z.ZodType<T>,
  decide: (current: ReadResult<T>) => UpdateStep<T, A> | Promise<UpdateStep<T, A>>,
  options: UpdateOptions = {},
): Promise<A> {
  return withFileLock(
    updateLockPath(path),
    async () => {
      const current = await readJsonState(path, schema, { fs: options.fs, hint: options.hint });
      const step = await decide(current);
      if ("write" in step) {
        await writeJsonAtomic(path, schema.parse(step.write), { fs: options.fs });
      }
      return step.answer;
    },
    // The lock lives for microseconds and a reboot ends its holder: no fsync for it, only for the data.
    { waitMs: options.lockWaitMs ?? 10_000, inspector: options.inspector, signal: options.signal, durable: false },
  );
}

/** Like readJsonState, but an unreadable file throws: for callers that must fail closed. */
export function unwrapRead<T>(result: ReadResult<T>): T | undefined {
  if (result.status === "unreadable") throw result.error;
  return result.status === "ok" ? result.value : undefined;
}
