import { portState } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import { type RunContext, canaryClient } from "../context.ts";
import type { CanaryPath, Refusal } from "./gates.ts";

/** Which path: a vLLM already on the canary port is tested as it is; else the spare GPU when allowed; else quiesced. */
export async function choosePath(ctx: RunContext, candidate: Candidate): Promise<{ path: CanaryPath } | { refusal: Refusal }> {
  const port = await portState(ctx.config.canaryPort);
  if (!port.free) {
    const client = canaryClient(ctx.config);
    const isVllm = await client.version(2000).then(
      () => true,
      () => false,
    );
    if (isVllm) {
      const mismatch = await attachedMismatch(ctx, candidate);
      return mismatch ? { refusal: { gate: "canary_port", reason: mismatch } } : { path: "attached" };
    }
    return {
      refusal: { gate: "canary_port", reason: `${port.description}, which is not a vLLM; the canary could not bind it (KLR_CANARY_PORT)` },
    };
  }
  return { path: ctx.config.allowSpareGpu ? "spare" : "quiesced" };
}

/** An attached canary must be shown to run the candidate's settings before its numbers mean anything. */
async function attachedMismatch(ctx: RunContext, candidate: Candidate): Promise<string | null> {
  const client = canaryClient(ctx.config);
  const [util, models] = await Promise.all([client.servedUtilization(3000).catch(() => null), client.models(3000).catch(() => null)]);
  if (util === null)
    return `the vLLM on port ${ctx.config.canaryPort} does not say its gpu_memory_utilization (no vllm:cache_config_info metric)`;
  if (Math.abs(util - candidate.vllmMemoryUtil) > 1e-6) {
    return `the vLLM on port ${ctx.config.canaryPort} runs gpu_memory_utilization ${util}, not the candidate's ${candidate.vllmMemoryUtil}`;
  }
  const model = ctx.config.modelPath;
  const served = models ?? [];
  if (!served.some((m) => m.id === model || m.root === model)) {
    return `the vLLM on port ${ctx.config.canaryPort} serves ${served.map((m) => m.id).join(", ") || "no model"}, not ${model} (KLR_MODEL_PATH)`;
  }
  return null;
}
