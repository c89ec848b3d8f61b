import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { GpuCanaryError, errnoCode } from "@gpu-canary/errors";
import { readJsonState, updateJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import * as z from "zod";
import { type Fingerprint, fingerprintDifferences, fingerprintSchema } from "./promotion-fingerprint.ts";
import { candidateJson } from "./candidate.ts";
import { type EvaluationResult, resultJson } from "./result.ts";

/**
 * Where a promotion stands (docs/architecture.md, "Promotions"): `proposed` until applied;
 * `superseded` when a newer one is applied, `stale` when the host changed since its canary.
 */
export const PROMOTION_STATES = ["proposed", "applied", "rolled_back", "superseded", "stale"] as const;
export type PromotionState = (typeof PROMOTION_STATES)[number];

/** A later canary of the same candidate on the same host that passed too: evidence added to the promotion. */
export const promotionPassSchema = z.looseObject({
  run_id: z.string(),
  created_at: z.string(),
  llm_latency_ms: z.number().nullable(),
  validation_reason: z.string(),
});
export type PromotionPass = z.infer<typeof promotionPassSchema>;

/** A promotion: a candidate that passed a canary, with the evidence (docs/architecture.md, "Promotions"). */
export const promotionSchema = z.looseObject({
  run_id: z.string(),
  created_at: z.string(),
  subsystem: z.string(),
  candidate: z.looseObject({ vllm_memory_util: z.number(), whisper_model_size: z.string() }),
  path: z.string().nullable(),
  whisper_verified: z.boolean(),
  llm_latency_ms: z.number().nullable(),
  // Files written before states existed were all proposals.
  state: z.enum(PROMOTION_STATES).default("proposed"),
  /** absent in files written before fingerprints: such a promotion equals no host */
  fingerprint: fingerprintSchema.optional(),
  state_changed_at: z.string().optional(),
  state_reason: z.string().optional(),
  passes: z.array(promotionPassSchema).default([]),
});
export type Promotion = z.infer<typeof promotionSchema>;

export function promotionFile(dir: string, runId: string): string {
  return join(dir, `${runId.replace(/[^A-Za-z0-9_.-]/g, "_")}.json`);
}

/** No promotion has this run id: an operator's typo, or a run that did not pass. */
export class PromotionNotFoundError extends GpuCanaryError {
  readonly runId: string;

  constructor(dir: string, runId: string) {
    super("PROMOTION_NOT_FOUND", `no promotion ${runId} in ${dir}`, {
      kind: "usage",
      hint: "`gpu-canary promotions list` names the promotions there are",
      details: { run_id: runId, dir },
    });
    this.runId = runId;
  }
}

const hint = (file: string) => `repair or remove ${file} by hand; gpu-canary will not guess a promotion's content`;

/** One promotion by its run id; missing is PromotionNotFoundError, an unreadable file fails closed naming it. */
export async function readPromotion(dir: string, runId: string): Promise<Promotion> {
  const file = promotionFile(dir, runId);
  const read = await readJsonState(file, promotionSchema, { hint: hint(file) });
  if (read.status === "unreadable") throw read.error;
  if (read.status === "missing") throw new PromotionNotFoundError(dir, runId);
  return read.value;
}

/** Move a promotion to `state`, saying why; rewritten atomically under the file's update lock. */
export async function setPromotionState(dir: string, runId: string, state: PromotionState, reason: string, now: Date): Promise<Promotion> {
  const file = promotionFile(dir, runId);
  // Checked before the update's lock: a run id that names nothing creates nothing (no folder, no lock).
  await readPromotion(dir, runId);
  return updateJsonState(
    file,
    promotionSchema,
    (current) => {
      if (current.status === "unreadable") throw current.error;
      if (current.status === "missing") throw new PromotionNotFoundError(dir, runId);
      const next: Promotion = { ...current.value, state, state_changed_at: now.toISOString(), state_reason: reason };
      return { write: next, answer: next };
    },
    { hint: hint(file) },
  );
}

/** Whether two promotions' hosts are the same as far as both are known: both fingerprinted, nothing known differs. */
export function sameHost(a: Fingerprint | undefined, b: Fingerprint | undefined): boolean {
  return a !== undefined && b !== undefined && fingerprintDifferences(a, b).length === 0;
}

function sameCandidate(p: Promotion, candidate: { vllm_memory_util: number; whisper_model_size: string }): boolean {
  return p.candidate.vllm_memory_util === candidate.vllm_memory_util && p.candidate.whisper_model_size === candidate.whisper_model_size;
}

/**
 * Write the promotion of a passed canary; `whisper_verified: false` carries the predicted headroom
 * instead. The same candidate passing again on the same host (a `proposed` promotion, an equal
 * fingerprint) adds its pass to that promotion instead of a second one: its path is returned.
 */
export async function writePromotion(
  dir: string,
  result: EvaluationResult,
  whisperVerified: boolean,
  fingerprint: Fingerprint,
  now: Date,
): Promise<string> {
  const json = resultJson(result);
  const candidate = candidateJson(result.candidate);
  const pass: PromotionPass = {
    run_id: result.runId,
    created_at: now.toISOString(),
    llm_latency_ms: result.llmLatencyMs,
    validation_reason: result.validationReason,
  };
  // Unreadable files are not matched: a new promotion is written beside them, never merged into a guess.
  const { promotions } = await listPromotions(dir);
  for (const existing of promotions) {
    if (existing.state !== "proposed" || !sameCandidate(existing, candidate) || !sameHost(existing.fingerprint, fingerprint)) continue;
    const added = await updateJsonState(
      existing.file,
      promotionSchema,
      (current) => {
        // Changed since the listing (applied, rolled back, removed): it no longer takes this pass.
        if (current.status !== "ok" || current.value.state !== "proposed") return { answer: false };
        return { write: { ...current.value, passes: [...current.value.passes, pass] }, answer: true };
      },
      { hint: hint(existing.file) },
    );
    if (added) return existing.file;
  }
  const path = promotionFile(dir, result.runId);
  const predicted = result.predicted;
  await writeJsonAtomic(path, {
    run_id: result.runId,
    created_at: now.toISOString(),
    subsystem: result.subsystem,
    candidate,
    path: result.measured?.path ?? null,
    whisper_verified: whisperVerified,
    ...(whisperVerified || !predicted ? {} : { whisper_predicted_headroom_bytes: predicted.freeAtStartBytes - predicted.requestedBytes }),
    llm_latency_ms: result.llmLatencyMs,
    validation_reason: result.validationReason,
    evidence: { predicted: json.predicted, measured: json.measured },
    state: "proposed",
    state_changed_at: now.toISOString(),
    fingerprint,
    passes: [],
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
