import type { AuditFeed } from "@gpu-canary/audit-feed";
import type { Config, WhisperSize } from "@gpu-canary/config";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import {
  type Candidate,
  type EvaluationResult,
  type PreflightResult,
  type Promotion,
  type RankedEvidence,
  type SpicaGPUAllocation,
  candidateJson,
  hostFingerprint,
  listPromotions,
  parseCandidate,
  promotionEvidence,
  provenHere,
  rankPromotions,
  rankingJson,
  sameHost,
  whyBefore,
} from "@gpu-canary/spica-evaluator";
import { readApplied } from "@gpu-canary/vllm-control";
import type { Intent } from "./intents.ts";
import { DIRECTION } from "./oom-classifier.ts";

export interface CurrentConfig {
  candidate: Candidate;
  /** where the numbers came from */
  source: string;
}

export interface Screened {
  candidate: Candidate;
  fits: boolean;
  reason: string;
  kvTokens: number;
  /** free memory left at vLLM's start beyond what it asks: the risk margin */
  headroomBytes: number;
}

/**
 * Refusals that pass by themselves: the window opens, the run holding the GPU lock ends (or is
 * recovered), another host's run frees its fleet maintenance slot. The intent waits and is tried
 * again rather than being closed as refused.
 */
const WAITS_FOR = new Set(["window", "lock", "crashed_run", "fleet_slot"]);

/** A refusal that passes by itself waits (deferred); any other stands (refused). */
const refusedStatus = (gate: string | null, waitsFor: ReadonlySet<string> = WAITS_FOR): TuningStatus =>
  gate !== null && waitsFor.has(gate) ? "deferred" : "refused";
/** A rollback after an out-of-memory event waits for the next night's budget too: it must not be dropped. */
const ROLLBACK_WAITS_FOR = new Set([...WAITS_FOR, "budget"]);

export type TuningStatus = "promoted" | "ranked" | "no_fit" | "deferred" | "refused" | "failed" | "error" | "rolled_back";

/** A candidate that fits but is not proposed: production ran it and rolled it back, on a host like this one. */
export interface RolledBack {
  candidate: Candidate;
  /** the promotion that was rolled back */
  runId: string;
  reason: string;
}

export interface TuningOutcome {
  status: TuningStatus;
  reason: string;
  current: CurrentConfig;
  ranking: Screened[];
  /** fitting candidates left out of the choice because they were rolled back here */
  rolledBack: RolledBack[];
  chosen: Candidate | null;
  result: EvaluationResult | null;
  /**
   * After a passed canary: this host's proposed promotions, best first by their canaries' evidence
   * (rankPromotions, the order the daemon's auto-apply takes them in); empty otherwise.
   */
  proposals: (RankedEvidence & { candidate: Promotion["candidate"] })[];
  /** the run id of the first of `proposals`: the one to apply; null when there is none */
  proposal: string | null;
  /** the gate that refused a run without a result (a rollback after an apply); else the result's */
  gate?: string | null;
}

// Whisper sizes from the smallest footprint to the largest (WHISPER_FP16_GIB).
const WHISPER_ORDER: WhisperSize[] = ["tiny", "base", "small", "medium", "turbo", "large", "large-v2", "large-v3"];
const STEPS = [0.02, 0.05, 0.08, 0.1];
const round2 = (v: number) => Math.round(v * 100) / 100;

function smallerWhisper(size: WhisperSize): WhisperSize | null {
  const i = WHISPER_ORDER.indexOf(size);
  return i > 0 ? (WHISPER_ORDER[i - 1] ?? null) : null;
}

/** Candidates around the current config in the direction the failure asks for, within the bounds. */
export function proposeCandidates(current: Candidate, direction: "more" | "less", bounds: { min: number; max: number }): Candidate[] {
  const sign = direction === "more" ? 1 : -1;
  const utils = STEPS.map((s) => round2(current.vllmMemoryUtil + sign * s)).filter((u) => u >= bounds.min && u <= bounds.max);
  const out: Candidate[] = utils.map((u) => ({ vllmMemoryUtil: u, whisperModelSize: current.whisperModelSize }));
  const smaller = smallerWhisper(current.whisperModelSize);
  if (smaller) {
    // A smaller Whisper makes room: as it is, and with the first step in the asked direction.
    const base = Math.min(bounds.max, Math.max(bounds.min, round2(current.vllmMemoryUtil)));
    out.push({ vllmMemoryUtil: base, whisperModelSize: smaller });
    if (utils[1] !== undefined) out.push({ vllmMemoryUtil: utils[1], whisperModelSize: smaller });
  }
  const seen = new Set<string>();
  return out.filter((c) => {
    const key = `${c.vllmMemoryUtil}/${c.whisperModelSize}`;
    if (seen.has(key) || (c.vllmMemoryUtil === current.vllmMemoryUtil && c.whisperModelSize === current.whisperModelSize)) return false;
    seen.add(key);
    return true;
  });
}

/** Most KV capacity first; at equal capacity, the larger safety margin. */
export function rank(screened: Screened[]): Screened[] {
  return [...screened].filter((s) => s.fits).sort((a, b) => b.kvTokens - a.kvTokens || b.headroomBytes - a.headroomBytes);
}

export interface TuningRunnerDeps {
  config: Config;
  evaluator: SpicaGPUAllocation;
  audit: AuditFeed;
  promotionsDir: string;
}

/**
 * ConfigTuningRunner: reads production's current config, proposes candidates in the direction
 * the failure calls for, screens them all predictively, ranks those that fit, and canaries the
 * best when the mode is canary (the evaluator's gates apply); else it records the ranking. After a
 * pass it ranks this host's proposed promotions by their canaries' evidence (rankPromotions): the
 * first is the proposal to apply, said in the decision with the rule that put it first.
 */
export function createTuningRunner(deps: TuningRunnerDeps) {
  const { config, evaluator, audit } = deps;

  const currentConfig = async (): Promise<CurrentConfig> => {
    const whisper = config.whisperSize;
    const util = await evaluator.context.production.servedUtilization(3000).catch(() => null);
    if (util !== null) {
      return { candidate: { vllmMemoryUtil: util, whisperModelSize: whisper }, source: "production's vllm:cache_config_info" };
    }
    const last = (await listPromotions(deps.promotionsDir)).promotions.at(-1);
    if (last) {
      try {
        return { candidate: parseCandidate(last.candidate), source: `the last promotion (${last.run_id})` };
      } catch {
        // a promotion with an odd candidate is skipped
      }
    }
    const middle = round2((config.vllmMemoryUtilMin + config.vllmMemoryUtilMax) / 2);
    return {
      candidate: { vllmMemoryUtil: middle, whisperModelSize: whisper },
      source: "assumed: production did not say and nothing was promoted (the middle of the bounds)",
    };
  };

  /**
   * The candidates among `candidates` that a promotion says were rolled back on this host (an equal
   * fingerprint): production showed they fail, so they are not proposed again. An unreadable
   * promotion could be such a one: it fails closed, naming the file.
   */
  const rolledBackHere = async (candidates: Candidate[]): Promise<RolledBack[]> => {
    if (candidates.length === 0) return [];
    const listing = await listPromotions(deps.promotionsDir);
    const bad = listing.unreadable[0];
    if (bad) {
      throw new GpuCanaryError("PROMOTION_UNREADABLE", `cannot tell which candidates were rolled back: ${bad.reason}`, {
        kind: "fault",
        hint: `repair or remove ${bad.file}; the tuning runner does not propose a candidate it cannot rule out`,
        details: { path: bad.file },
      });
    }
    const rolledBack = listing.promotions.filter((p) => p.state === "rolled_back" && p.fingerprint !== undefined);
    const matching = (c: Candidate) =>
      rolledBack.filter((p) => p.candidate.vllm_memory_util === c.vllmMemoryUtil && p.candidate.whisper_model_size === c.whisperModelSize);
    // The host is asked only when a rolled-back candidate is among them (nvidia-smi, production's /version).
    if (!candidates.some((c) => matching(c).length > 0)) return [];
    const here = await hostFingerprint(evaluator.context);
    return candidates.flatMap((candidate) => {
      const promotion = matching(candidate).find((p) => sameHost(p.fingerprint, here));
      return promotion ? [{ candidate, runId: promotion.run_id, reason: promotion.state_reason ?? "rolled back" }] : [];
    });
  };

  const screen = async (candidate: Candidate): Promise<Screened> => {
    try {
      const p: PreflightResult = await evaluator.predict(candidate);
      return {
        candidate,
        fits: p.ok,
        reason: p.reason,
        kvTokens: p.predicted.kvTokens,
        headroomBytes: p.predicted.freeAtStartBytes - p.predicted.requestedBytes,
      };
    } catch (error) {
      return { candidate, fits: false, reason: messageOf(error), kvTokens: 0, headroomBytes: 0 };
    }
  };

  /** The promotion an out-of-memory event now condemns: one applied within KLR_APPLY_WATCH_HOURS. */
  const watchedApply = async (eventAt: string | undefined): Promise<{ promotion: string; appliedAt: string } | null> => {
    if (config.applyWatchHours <= 0) return null;
    const applied = await readApplied(evaluator.context.layout.appliedFile);
    // A rollback is not watched: going "back" from it would re-apply what was just rolled back.
    if (!applied?.promotion_run_id || !applied.applied_at || applied.change === "rollback") return null;
    // An event from before the apply says nothing of it (an intent deferred across an apply, an old log).
    if (eventAt !== undefined && Date.parse(eventAt) < Date.parse(applied.applied_at)) return null;
    const age = evaluator.context.now().getTime() - Date.parse(applied.applied_at);
    return age >= 0 && age < config.applyWatchHours * 3_600_000
      ? { promotion: applied.promotion_run_id, appliedAt: applied.applied_at }
      : null;
  };

  /**
   * After a pass: this host's proposed promotions (apply's rule: none whose fingerprint differs), best
   * first by their canaries' evidence, and a clause saying which one to apply and why when the new
   * promotion is not alone. A ranking that cannot be made does not undo the pass: it is said instead.
   */
  const rankProposals = async (result: EvaluationResult): Promise<{ proposals: TuningOutcome["proposals"]; text: string }> => {
    try {
      const proposed = (await listPromotions(deps.promotionsDir)).promotions.filter((p) => p.state === "proposed");
      if (proposed.length === 0) return { proposals: [], text: "" };
      const here = await hostFingerprint(evaluator.context);
      const ranked = rankPromotions(proposed.filter((p) => provenHere(p, here)));
      const proposals = ranked.map((p) => ({ ...promotionEvidence(p), candidate: p.candidate }));
      const [first] = ranked;
      const mine = ranked.find(
        (p) => p.file === result.promotionPath || p.run_id === result.runId || p.passes.some((pass) => pass.run_id === result.runId),
      );
      if (!first || ranked.length < 2) return { proposals, text: "" };
      if (first === mine) return { proposals, text: `; the best of ${ranked.length} proposals on this host by their canaries' evidence` };
      const why = mine ? `: ${whyBefore(promotionEvidence(first), promotionEvidence(mine))}` : "";
      return {
        proposals,
        text: `; the proposal to apply stays ${first.run_id} (vllm_memory_util ${first.candidate.vllm_memory_util} with Whisper ${first.candidate.whisper_model_size}), first of ${ranked.length} on this host by their canaries' evidence${why}`,
      };
    } catch (error) {
      return { proposals: [], text: `; the proposals on this host could not be ranked: ${messageOf(error)}` };
    }
  };

  return {
    currentConfig,
    async run(
      intent: Pick<Intent, "id" | "kind" | "subsystem" | "candidate"> & Partial<Pick<Intent, "evidence" | "created_at">>,
      options: { dryRun?: boolean } = {},
    ): Promise<TuningOutcome> {
      const current = await currentConfig();
      if (intent.kind !== "manual" && intent.candidate === undefined && !options.dryRun) {
        const watched = await watchedApply(intent.created_at);
        if (watched) return rollBack(intent, current, watched);
      }
      const proposals =
        intent.candidate !== undefined
          ? [parseCandidate(intent.candidate)]
          : intent.kind === "manual"
            ? [...proposeCandidates(current.candidate, "more", bounds()), ...proposeCandidates(current.candidate, "less", bounds())]
            : proposeCandidates(current.candidate, DIRECTION[intent.kind], bounds());
      const screened = await Promise.all(proposals.map(screen));
      const ranking = rank(screened);
      let rolledBack: RolledBack[] = [];
      const decide = async (
        outcome: Omit<TuningOutcome, "current" | "ranking" | "rolledBack" | "proposals" | "proposal">,
        proposals: TuningOutcome["proposals"] = [],
      ): Promise<TuningOutcome> => {
        const proposal = proposals[0]?.runId ?? null;
        await audit.append({
          event: "tuning_decision",
          run_id: outcome.result?.runId ?? null,
          intent_id: intent.id,
          outcome: outcome.status,
          reason: outcome.reason,
          current: { ...candidateJson(current.candidate), source: current.source },
          ranking: ranking.map((s) => ({ ...candidateJson(s.candidate), kv_tokens: s.kvTokens })),
          rejected: screened.filter((s) => !s.fits).map((s) => ({ ...candidateJson(s.candidate), reason: s.reason })),
          rolled_back: rolledBack.map((r) => ({ ...candidateJson(r.candidate), run_id: r.runId, reason: r.reason })),
          ...(proposals.length > 0
            ? { proposal, proposals: rankingJson(proposals).map((j, i) => ({ ...proposals[i]?.candidate, ...j })) }
            : {}),
          dry_run: options.dryRun === true,
        });
        return { ...outcome, current, ranking, rolledBack, proposals, proposal };
      };
      try {
        rolledBack = await rolledBackHere(ranking.map((s) => s.candidate));
      } catch (error) {
        return decide({ status: "error", reason: messageOf(error), chosen: null, result: null });
      }
      const skipped = new Set(rolledBack.map((r) => r.candidate));
      const eligible = ranking.filter((s) => !skipped.has(s.candidate));
      // Said in every decision that skipped one: the operator sees why the best fit was not tried.
      const skippedText =
        rolledBack.length === 0
          ? ""
          : `; not proposed again, rolled back on this host: ${rolledBack.map((r) => `${fmt(r.candidate)} (${r.runId}: ${r.reason})`).join("; ")}`;
      const best = eligible[0];
      if (!best && ranking.length > 0) {
        return decide({
          status: "no_fit",
          reason: `every candidate that fits around ${fmt(current.candidate)} was rolled back on this host${skippedText}`,
          chosen: null,
          result: null,
        });
      }
      if (!best) {
        return decide({
          status: "no_fit",
          reason: `none of ${screened.length} candidates around ${fmt(current.candidate)} fits the predictive model${screened[0] ? `; e.g. ${fmt(screened[0].candidate)}: ${screened[0].reason}` : ""}`,
          chosen: null,
          result: null,
        });
      }
      if (options.dryRun || config.canaryMode === "predictive") {
        return decide({
          status: "ranked",
          reason: `${ranking.length} of ${screened.length} candidates fit; best ${fmt(best.candidate)} with ${best.kvTokens} KV tokens${options.dryRun ? " (dry run: no canary)" : " (predictive mode: no canary)"}${skippedText}`,
          chosen: best.candidate,
          result: null,
        });
      }
      const result = await evaluator.runTest(candidateJson(best.candidate), {
        mode: "canary",
        subsystem: intent.subsystem,
        intentKind: intent.kind,
      });
      const status: TuningStatus =
        result.status === "passed"
          ? "promoted"
          : result.status === "refused"
            ? refusedStatus(result.gate)
            : result.status === "error"
              ? "error"
              : "failed";
      const byEvidence = status === "promoted" ? await rankProposals(result) : { proposals: [], text: "" };
      return decide(
        {
          status,
          reason: `${fmt(best.candidate)}: ${result.validationReason}${skippedText}${byEvidence.text}`,
          chosen: best.candidate,
          result,
        },
        byEvidence.proposals,
      );
    },
  };

  /**
   * Production ran out of memory within the watch after an apply: the apply goes back, at once when
   * production is down (it is anyway), else under the gates of any apply (the next window).
   */
  async function rollBack(
    intent: Pick<Intent, "id"> & Partial<Pick<Intent, "evidence">>,
    current: CurrentConfig,
    watched: { promotion: string; appliedAt: string },
  ): Promise<TuningOutcome> {
    const line = intent.evidence?.split("\n")[0] ?? "an out-of-memory event";
    const outcome = await evaluator.rollback({ because: line });
    const status: TuningStatus =
      outcome.status === "applied"
        ? "rolled_back"
        : outcome.status === "refused"
          ? refusedStatus(outcome.gate, ROLLBACK_WAITS_FOR)
          : "failed";
    const reason = `out of memory within ${config.applyWatchHours} h of applying promotion ${watched.promotion} (${watched.appliedAt}): ${outcome.reason}`;
    await audit.append({
      event: "tuning_decision",
      run_id: outcome.runId,
      intent_id: intent.id,
      outcome: status,
      reason,
      promotion: watched.promotion,
    });
    return {
      status,
      reason,
      current,
      ranking: [],
      rolledBack: [],
      chosen: null,
      result: null,
      proposals: [],
      proposal: null,
      gate: outcome.gate,
    };
  }

  function bounds() {
    return { min: config.vllmMemoryUtilMin, max: config.vllmMemoryUtilMax };
  }
}

function fmt(c: Candidate): string {
  return `vllm_memory_util ${c.vllmMemoryUtil} with Whisper ${c.whisperModelSize}`;
}

export type TuningRunner = ReturnType<typeof createTuningRunner>;
