import { readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import * as z from "zod";

/** vllm_seen.json: what production vLLM was last seen as — it may be down after its own OOM. */
export const vllmSeenSchema = z.looseObject({
  version: z.string().nullable(),
  seen_at: z.string(),
  gpu_index: z.number().int().nonnegative().optional(),
  cuda_total_mib: z.number().nonnegative().nullable().optional(),
  production_mib: z.number().nonnegative().nullable().optional(),
  /** what a sleeping production kept on the card (context, CUDA graphs), when measured */
  sleep_residue_mib: z.number().nonnegative().nullable().optional(),
  /** production's traffic as its /metrics last showed it: a canary's load is shaped after it */
  load_shape: z
    .object({
      concurrency: z.number().nonnegative().nullable(),
      concurrency_seen_at: z.string().optional(),
      prompt_tokens_p50: z.number().positive().nullable(),
      prompt_tokens_p95: z.number().positive().nullable(),
      output_tokens_p50: z.number().positive().nullable(),
      output_tokens_p95: z.number().positive().nullable(),
      seen_at: z.string(),
    })
    .optional(),
});
export type VllmSeen = z.infer<typeof vllmSeenSchema>;

const hint = (path: string) => `remove ${path}; gpu-canary writes it again the next time production answers /version`;

/** null when absent; an unreadable file is an error naming it (it is never silently rewritten). */
export async function readVllmSeen(path: string): Promise<VllmSeen | null> {
  const read = await readJsonState(path, vllmSeenSchema, { hint: hint(path) });
  if (read.status === "unreadable") throw read.error;
  return read.status === "ok" ? read.value : null;
}

/** Merge what was seen now into the file; fields not seen now keep their earlier value. */
export async function rememberVllmSeen(path: string, seen: Partial<VllmSeen> & { seen_at: string }): Promise<void> {
  const before = await readVllmSeen(path);
  const defined = Object.fromEntries(Object.entries(seen).filter(([, v]) => v !== undefined));
  await writeJsonAtomic(path, { version: null, ...before, ...defined });
}
