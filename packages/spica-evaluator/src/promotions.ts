import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { errnoCode } from "@gpu-canary/errors";
import { readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import { z } from "zod";
import { type EvaluationResult, resultJson } from "./result.ts";

/** A promotion: a candidate that passed a canary, with the evidence (docs/architecture.md, "Promotions"). */
export const promotionSchema = z.looseObject({
  run_id: z.string(),
  created_at: z.string(),
  subsystem: z.string(),
  candidate: z.looseObject({ vllm_memory_util: z.number(), whisper_model_size: z.string() }),
  path: z.string().nullable(),
  whisper_verified: z.boolean(),
  llm_latency_ms: z.number().nullable(),
});
export type Promotion = z.infer<typeof promotionSchema>;

export function promotionFile(dir: string, runId: string): string {
  return join(dir, `${runId.replace(/[^A-Za-z0-9_.-]/g, "_")}.json`);
}

/** Write the promotion of a passed canary; `whisper_verified: false` carries the predicted headroom instead. */
export async function writePromotion(dir: string, result: EvaluationResult, whisperVerified: boolean, now: Date): Promise<string> {
  const path = promotionFile(dir, result.runId);
  const json = resultJson(result);
  const predicted = result.predicted;
  await writeJsonAtomic(path, {
    run_id: result.runId,
    created_at: now.toISOString(),
    subsystem: result.subsystem,
    candidate: json.candidate,
    path: result.measured?.path ?? null,
    whisper_verified: whisperVerified,
    ...(whisperVerified || !predicted ? {} : { whisper_predicted_headroom_bytes: predicted.freeAtStartBytes - predicted.requestedBytes }),
    llm_latency_ms: result.llmLatencyMs,
    validation_reason: result.validationReason,
    evidence: { predicted: json.predicted, measured: json.measured },
  });
  return path;
}

export interface PromotionListing {
  promotions: (Promotion & { file: string })[];
  /** files that are not promotions: named, never dropped silently */
  unreadable: { file: string; reason: string }[];
}

/** Every promotion, oldest first. */
export async function listPromotions(dir: string): Promise<PromotionListing> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith(".json")).sort();
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return { promotions: [], unreadable: [] };
    throw error;
  }
  const listing: PromotionListing = { promotions: [], unreadable: [] };
  for (const name of names) {
    const file = join(dir, name);
    const read = await readJsonState(file, promotionSchema);
    if (read.status === "ok") listing.promotions.push({ ...read.value, file });
    else if (read.status === "unreadable") listing.unreadable.push({ file, reason: read.error.message });
  }
  listing.promotions.sort((a, b) => a.created_at.localeCompare(b.created_at));
  return listing;
}
