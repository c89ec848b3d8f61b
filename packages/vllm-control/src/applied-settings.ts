import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { readJsonState, writeFileAtomic, writeJsonAtomic } from "@gpu-canary/state-file";
import * as z from "zod";

/** One version of production's settings: what it serves with, and the config file that says so. */
export const appliedEntrySchema = z.object({
  vllm_memory_util: z.number().nullable(),
  whisper_model_size: z.string(),
  /** the promotion's run, or null for the settings production had before gpu-canary applied any */
  promotion_run_id: z.string().nullable(),
  applied_at: z.string().nullable(),
  /** the copy under .kloros/vllm/history/ of the config file as it was applied */
  file: z.string(),
});
export type AppliedEntry = z.infer<typeof appliedEntrySchema>;

/** applied.json: what is applied now and the one before it (`rollback` goes back to it). */
export const appliedSchema = appliedEntrySchema.extend({
  /** the apply or rollback run that wrote it */
  run_id: z.string().nullable(),
  /** which wrote it: only an apply is watched for out-of-memory events afterwards */
  change: z.enum(["apply", "rollback"]).optional(),
  previous: appliedEntrySchema.nullable(),
});
export type Applied = z.infer<typeof appliedSchema>;

const HINT =
  "restore it from .kloros/vllm/history/ (the newest file there is what production was last given) or remove it to start the record again from the config file";

/** What is applied, or null before any apply; an unreadable file fails closed and names itself. */
export async function readApplied(path: string): Promise<Applied | null> {
  const read = await readJsonState(path, appliedSchema, { hint: HINT });
  if (read.status === "missing") return null;
  if (read.status === "unreadable") throw read.error;
  return read.value;
}

export async function writeApplied(path: string, applied: Applied): Promise<void> {
  await writeJsonAtomic(path, applied);
}

/** `<YYYYMMDDTHHMMSSZ>-<name>.yaml`: sorted by time, named by the run that wrote it. */
export function historyFileName(at: Date, name: string): string {
  const stamp = at
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
  return `${stamp}-${name.replace(/[^A-Za-z0-9_.-]/g, "_")}.yaml`;
}

/** Keep one version of the config file in the history (each name is a moment and a run: none is replaced by another). */
export async function keepInHistory(dir: string, at: Date, name: string, text: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, historyFileName(at, name));
  await writeFileAtomic(path, text);
  return path;
}
