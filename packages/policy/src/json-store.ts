import { type ReadResult, type UpdateOptions, type UpdateStep, readJsonState, updateJsonState } from "@gpu-canary/state-file";
import type { z } from "zod";

/**
 * Where one policy document lives. The rules talk to this interface only, so a shared
 * backend for many hosts can replace the file without touching them.
 */
export interface JsonStore<T> {
  /** a name for messages: the file path, or the key in a shared backend */
  readonly location: string;
  read(): Promise<ReadResult<T>>;
  /** an atomic read-modify-write that no concurrent update can interleave with */
  update<A>(decide: (current: ReadResult<T>) => UpdateStep<T, A> | Promise<UpdateStep<T, A>>): Promise<A>;
}

export function createJsonFileStore<T>(path: string, schema: z.ZodType<T>, options: UpdateOptions & { hint: string }): JsonStore<T> {
  return {
    location: path,
    read: () => readJsonState(path, schema, { fs: options.fs, hint: options.hint }),
    update: (decide) => updateJsonState(path, schema, decide, options),
  };
}
