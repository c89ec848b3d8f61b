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

/** `promotions [list]`: the candidates that passed a canary, oldest first. */
export async function runPromotions(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const { listPromotions } = await import("@gpu-canary/spica-evaluator");
  const listing = await listPromotions(settings.layout.promotionsDir);
  for (const bad of listing.unreadable) io.stderr(`warning: ${bad.file} is not a promotion: ${bad.reason}\n`);
  answer(io, options, { dir: settings.layout.promotionsDir, promotions: listing.promotions, unreadable: listing.unreadable }, () => {
    if (listing.promotions.length === 0) return `No promotions yet (${settings.layout.promotionsDir}).`;
    return listing.promotions
      .map(
        (p) =>
          `${p.created_at}  ${p.run_id}  vllm_memory_util ${p.candidate.vllm_memory_util}  whisper ${p.candidate.whisper_model_size}` +
          `  ${p.path ?? "?"}  latency ${p.llm_latency_ms ?? "?"} ms  whisper ${p.whisper_verified ? "verified" : "not verified"}${underLoad(p)}`,
      )
      .join("\n");
  });
  return 0;
}
