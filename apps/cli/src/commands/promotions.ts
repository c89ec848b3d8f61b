import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { loadSettings } from "../settings.ts";

/** The load a promotion passed under, from its evidence: a light load proves less than production's. */
function underLoad(p: Record<string, unknown>): string {
  const measured = (p.evidence as { measured?: { load?: Record<string, unknown> | null; preemptions?: number | null } } | undefined)
    ?.measured;
  const load = measured?.load;
  if (!load) return "  load: none recorded";
  return `  load ${String(load.concurrency)} × ${String(load.prompt_tokens)}+${String(load.output_tokens)} tokens (${String(load.basis)}), ${String(measured.preemptions ?? "?")} preemptions`;
}

/** Later passes of the same candidate on the same host, added to the promotion as evidence. */
function passesText(passes: readonly unknown[]): string {
  return passes.length === 0 ? "" : `  passed ${passes.length + 1}×`;
}

/** `promotions [list]`: the candidates that passed a canary, oldest first, with where each stands. */
export async function runPromotions(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const { listPromotions } = await import("@gpu-canary/spica-evaluator");
  const listing = await listPromotions(settings.layout.promotionsDir);
  for (const bad of listing.unreadable) io.stderr(`warning: ${bad.file} is not a promotion: ${bad.reason}\n`);
  // Every promotion says its state, fingerprint and passes in JSON, those from before them too (null, []).
  const promotions = listing.promotions.map((p) => ({ ...p, fingerprint: p.fingerprint ?? null }));
  answer(io, options, { dir: settings.layout.promotionsDir, promotions, unreadable: listing.unreadable }, () => {
    if (listing.promotions.length === 0) return `No promotions yet (${settings.layout.promotionsDir}).`;
    return listing.promotions
      .map(
        (p) =>
          `${p.created_at}  ${p.run_id}  ${p.state}${p.state !== "proposed" && p.state_reason ? ` (${p.state_reason})` : ""}  vllm_memory_util ${p.candidate.vllm_memory_util}  whisper ${p.candidate.whisper_model_size}` +
          `  ${p.path ?? "?"}  latency ${p.llm_latency_ms ?? "?"} ms  whisper ${p.whisper_verified ? "verified" : "not verified"}${passesText(p.passes)}${underLoad(p)}`,
      )
      .join("\n");
  });
  return 0;
}
