import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import { readApplied } from "@gpu-canary/vllm-control";
import { type Candidate, parseCandidate } from "../candidate.ts";
import type { RunContext } from "../context.ts";
import { fingerprintDifferences, hostFingerprint } from "../promotion-fingerprint.ts";
import { type PromotionState, readPromotion, setPromotionState } from "../promotions.ts";
import { type SettingsChange, type SettingsChangeOutcome, changeSettings, configPathOf } from "./change-settings.ts";

/** The predictive check, asked again at apply time: the card may have changed since the canary. */
export type Predict = (candidate: Candidate) => Promise<{ ok: boolean; reason: string }>;

const refusal = (code: string, message: string, hint: string) => new GpuCanaryError(code, message, { kind: "refused", hint });

/** A promotion's new state; one that is gone or unreadable is said, never fatal to a change already made. */
async function mark(ctx: RunContext, runId: string | null, state: PromotionState, reason: string): Promise<string | null> {
  if (runId === null) return null;
  try {
    await setPromotionState(ctx.layout.promotionsDir, runId, state, reason, ctx.now());
    return null;
  } catch (error) {
    return `promotion ${runId} could not be marked ${state}: ${messageOf(error)}`;
  }
}

/** Run a change and end it in the audit trail with one run_finished, whatever its way out. */
async function finished(ctx: RunContext, change: SettingsChange, run: () => Promise<SettingsChangeOutcome>) {
  let outcome: SettingsChangeOutcome;
  try {
    outcome = await run();
  } catch (error) {
    await ctx.audit
      .append({ event: "run_finished", run_id: change.runId, status: "error", mode: change.kind, reason: messageOf(error) })
      .catch(() => undefined);
    throw error;
  }
  await ctx.audit.append({
    event: "run_finished",
    run_id: change.runId,
    status: outcome.status,
    mode: change.kind,
    reason: outcome.reason,
    ...(outcome.gate ? { gate: outcome.gate } : {}),
  });
  return outcome;
}

/**
 * `gpu-canary apply <run_id>`: put a promotion's utilization into production's config file, restart
 * production and verify it; a failed verification puts the previous file back (docs/operations.md, "Applying a promotion, rolling back").
 */
export async function applyPromotion(
  ctx: RunContext,
  promotionRunId: string,
  deps: { runId: string; predict: Predict },
): Promise<SettingsChangeOutcome> {
  configPathOf(ctx);
  const promotion = await readPromotion(ctx.layout.promotionsDir, promotionRunId);
  const anew = "run a new canary for the candidate (`gpu-canary evaluate --mode canary`) to prove it on the host as it is now";
  if (promotion.state === "rolled_back" || promotion.state === "stale")
    throw refusal(
      "PROMOTION_NOT_APPLICABLE",
      `promotion ${promotionRunId} is ${promotion.state}${promotion.state_reason ? `: ${promotion.state_reason}` : ""}`,
      anew,
    );
  if (promotion.fingerprint) {
    const changed = fingerprintDifferences(promotion.fingerprint, await hostFingerprint(ctx));
    if (changed.length > 0) {
      const reason = `the host changed since its canary: ${changed.join("; ")}`;
      await mark(ctx, promotionRunId, "stale", reason);
      throw refusal("PROMOTION_STALE", `promotion ${promotionRunId} is stale: ${reason}`, anew);
    }
  }
  // A hand-edited promotion is checked as any candidate is (usage error, exit 2).
  const candidate = parseCandidate({
    vllm_memory_util: promotion.candidate.vllm_memory_util,
    whisper_model_size: promotion.candidate.whisper_model_size,
  });
  if (candidate.whisperModelSize !== ctx.config.whisperSize)
    throw refusal(
      "APPLY_CHANGES_WHISPER",
      `promotion ${promotionRunId} runs Whisper ${candidate.whisperModelSize}, production's is ${ctx.config.whisperSize}: apply changes vLLM's config file only`,
      "switch Whisper's service to that size and set KLR_WHISPER_SIZE by hand, then apply again",
    );
  const predicted = await deps.predict(candidate);
  if (!predicted.ok)
    throw refusal(
      "PREDICTIVE_REJECTS",
      `the predictive check rejects promotion ${promotionRunId} on the card as it is now: ${predicted.reason}`,
      "`gpu-canary gpus` shows what holds the card; run a new canary once it has room",
    );
  const change: SettingsChange = {
    kind: "apply",
    runId: deps.runId,
    to: { gpuMemoryUtilization: candidate.vllmMemoryUtil, name: promotionRunId },
    entry: { vllm_memory_util: candidate.vllmMemoryUtil, whisper_model_size: candidate.whisperModelSize, promotion_run_id: promotionRunId },
  };
  const outcome = await finished(ctx, change, () => changeSettings(ctx, change));
  const notes: (string | null)[] = [];
  if (outcome.status === "applied") {
    const replaced = outcome.applied?.previous?.promotion_run_id ?? null;
    if (replaced !== promotionRunId)
      notes.push(await mark(ctx, replaced, "superseded", `promotion ${promotionRunId} was applied by run ${deps.runId}`));
    notes.push(await mark(ctx, promotionRunId, "applied", `applied and verified by run ${deps.runId}`));
  } else if (outcome.status === "rolled_back") notes.push(await mark(ctx, promotionRunId, "rolled_back", outcome.reason));
  return withNotes(outcome, notes);
}

const withNotes = (outcome: SettingsChangeOutcome, notes: (string | null)[]): SettingsChangeOutcome => {
  const said = notes.filter((n): n is string => n !== null);
  return said.length === 0 ? outcome : { ...outcome, reason: `${outcome.reason}; ${said.join("; ")}` };
};

/**
 * `gpu-canary rollback`: back to the settings applied before the current ones, the same way as an
 * apply. `because` is production's out-of-memory line after the apply (the watch): then it goes
 * ahead at once when production is down, and the promotion is rolled back with the line as evidence.
 */
export async function rollbackSettings(ctx: RunContext, deps: { runId: string; because?: string }): Promise<SettingsChangeOutcome> {
  configPathOf(ctx);
  const applied = await readApplied(ctx.layout.appliedFile);
  const previous = applied?.previous ?? null;
  if (!applied || !previous || previous.vllm_memory_util === null)
    throw refusal(
      "NOTHING_TO_ROLL_BACK",
      applied ? `${ctx.layout.appliedFile} names no earlier settings to go back to` : "no apply is recorded: nothing to roll back",
      "`gpu-canary production` shows what production serves with",
    );
  if (previous.promotion_run_id !== null) {
    const back = await readPromotion(ctx.layout.promotionsDir, previous.promotion_run_id).catch(() => null);
    if (back && (back.state === "rolled_back" || back.state === "stale"))
      throw refusal(
        "NOTHING_TO_ROLL_BACK",
        `the settings before are promotion ${back.run_id}'s, which is ${back.state}${back.state_reason ? `: ${back.state_reason}` : ""}`,
        "apply a promotion that is proposed (`gpu-canary promotions list`), or edit KLR_VLLM_CONFIG by hand and restart production",
      );
  }
  const change: SettingsChange = {
    kind: "rollback",
    runId: deps.runId,
    to: { gpuMemoryUtilization: previous.vllm_memory_util, name: "rollback" },
    entry: {
      vllm_memory_util: previous.vllm_memory_util,
      whisper_model_size: previous.whisper_model_size,
      promotion_run_id: previous.promotion_run_id,
    },
    rateLimited: false,
    ...(deps.because !== undefined ? { evenIfDown: true } : {}),
  };
  const outcome = await finished(ctx, change, () => changeSettings(ctx, change));
  if (outcome.status !== "applied") return outcome;
  return withNotes(outcome, [
    await mark(
      ctx,
      applied.promotion_run_id,
      "rolled_back",
      deps.because !== undefined
        ? `production ran out of memory after the apply: ${deps.because} (rolled back by run ${deps.runId})`
        : `rolled back by \`gpu-canary rollback\` (run ${deps.runId})`,
    ),
    await mark(ctx, previous.promotion_run_id, "applied", `applied again by \`gpu-canary rollback\` (run ${deps.runId})`),
  ]);
}
