import type { GpuLockHandle } from "@gpu-canary/gpu-lock";
import type { CanaryProcess } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import type { RunContext } from "../context.ts";
import { type Step, runSteps, stepIoOf } from "./steps.ts";
import type { ProductionObserved } from "./production-observed.ts";
import { type LoadTarget, type TestVerdict, launch, observeProductionOf, testAndJudge } from "./test-canary.ts";
import { stopCanary } from "./undoing.ts";

// The paths that leave production untouched: a canary on the spare GPU, or the vLLM already on the canary port.

interface UntouchedRun {
  ctx: RunContext;
  candidate: Candidate;
  runId: string;
  path: "spare" | "attached";
  observed: ProductionObserved;
  target: LoadTarget;
  canary: CanaryProcess | null;
  verdict: TestVerdict | null;
}

const baseline: Step<UntouchedRun> = {
  phase: "baseline",
  do: async (s) => {
    s.observed = await observeProductionOf(s.ctx);
    return undefined;
  },
};

const testing: Step<UntouchedRun> = {
  phase: "testing",
  do: async (s) => {
    s.verdict = await testAndJudge(s.ctx, { canary: s.canary, path: s.path, observed: s.observed, runId: s.runId, target: s.target });
    return undefined;
  },
};

const spareSteps: Step<UntouchedRun>[] = [
  baseline,
  {
    phase: "canary_starting",
    says: (s) => `starting the canary on spare GPU ${s.ctx.config.spareGpuId}, production untouched`,
    do: (s) => {
      s.canary = launch(s.ctx, s.candidate, s.ctx.config.spareGpuId);
      return Promise.resolve({ port: s.ctx.config.canaryPort, gpu_index: s.ctx.config.spareGpuId, path: "spare", pgid: s.canary.pgid });
    },
    event: "canary_started",
    undo: {
      phase: "canary_stopping",
      do: (s) => stopCanary(s.canary),
      event: "canary_stopped",
    },
  },
  testing,
];

const attachedSteps: Step<UntouchedRun>[] = [
  {
    ...baseline,
    says: (s) => `testing the vLLM already serving on port ${s.ctx.config.canaryPort}`,
  },
  testing,
];

/** Test the candidate without touching production; throws on any way out other than a verdict. */
export async function untouched(
  ctx: RunContext,
  run: { candidate: Candidate; runId: string; handle: GpuLockHandle; path: "spare" | "attached"; target: LoadTarget },
): Promise<{ verdict: TestVerdict; notes: string[] }> {
  const state: UntouchedRun = {
    ctx,
    candidate: run.candidate,
    runId: run.runId,
    path: run.path,
    target: run.target,
    observed: { baseline: null, shape: null },
    canary: null,
    verdict: null,
  };
  const { failure, notes } = await runSteps(run.path === "spare" ? spareSteps : attachedSteps, state, stepIoOf(ctx, run.runId, run.handle));
  if (failure) throw failure;
  if (!state.verdict) throw new Error(`the ${run.path} run ended without a verdict`);
  return { verdict: state.verdict, notes };
}
