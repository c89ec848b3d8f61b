import { randomBytes } from "node:crypto";
import { type AuditFeed, createAuditFeed } from "@gpu-canary/audit-feed";
import { type Config, type Layout, layoutFor } from "@gpu-canary/config";
import { GpuCanaryError, InterruptedError, messageOf } from "@gpu-canary/errors";
import type { GpuProbe } from "@gpu-canary/gpu-probe";
import { applyPromotion, rollbackSettings } from "./apply/apply.ts";
import type { SettingsChangeOutcome } from "./apply/change-settings.ts";
import { type Candidate, parseCandidate } from "./candidate.ts";
import { runCanary } from "./canary/run-canary.ts";
import { type PolicyStores, type RunContext, productionServiceOf, statusContextOf } from "./context.ts";
import type { FleetGate } from "./fleet-gate.ts";
import { runPreflight } from "./predictive/preflight.ts";
import { hostFingerprint } from "./promotion-fingerprint.ts";
import { writePromotion } from "./promotions.ts";
import type { EvaluationMode, EvaluationResult } from "./result.ts";
import { GPUAllocationTestConfig } from "./test-config.ts";

export interface SpicaOptions {
  config: Config;
  /** default: the bounds of the settings (KLR_VLLM_MEMORY_UTIL_MIN / _MAX) */
  testConfig?: GPUAllocationTestConfig;
  layout?: Layout;
  now?: () => Date;
  /** extra environment for operator commands, the canary and nvidia-smi */
  env?: Record<string, string>;
  probe?: GpuProbe;
  audit?: AuditFeed;
  /** where the budget and the rate limits are kept (default: the files under KLR_HOME) */
  stores?: PolicyStores;
  /** KLR_STATE_URL: the fleet's maintenance slots, taken by quiesced runs and applies */
  fleet?: FleetGate;
  /** aborting ends a run safely (production restored); the reason, a signal name, becomes the exit code */
  signal?: AbortSignal;
  onProgress?: (line: string) => void;
  /** each step and undo of a canary run as it starts, with its phase (RunContext.onStep) */
  onStep?: (phase: string, line: string | null) => void;
  /** who takes the lock, e.g. "gpu-canary evaluate" */
  owner?: string;
  useSystemdRun?: boolean;
  /** between two nvidia-smi readings of a started Whisper's memory (default 1 s) */
  whisperPollMs?: number;
}

export interface RunTestOptions {
  /** default: KLR_CANARY_MODE */
  mode?: EvaluationMode;
  /** default: the first of KLR_SUBSYSTEMS */
  subsystem?: string;
  /** the intent the run answers (oom_kv_cache, oom_runtime, oom_max_model_len, …): the canary's load reproduces its failure */
  intentKind?: string | null;
}

export function newRunId(now: Date): string {
  return `r-${now.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "")}-${randomBytes(3).toString("hex")}`;
}

/**
 * SpicaGPUAllocation: is a candidate `{"vllm_memory_util", "whisper_model_size"}` safe? First by
 * arithmetic (predictive), then — in canary mode, when the gates allow — for real.
 */
export class SpicaGPUAllocation {
  readonly testConfig: GPUAllocationTestConfig;
  readonly context: RunContext;
  private readonly owner: string;

  constructor(options: SpicaOptions) {
    const config = options.config;
    this.testConfig =
      options.testConfig ??
      new GPUAllocationTestConfig({ vllmMemoryUtilMin: config.vllmMemoryUtilMin, vllmMemoryUtilMax: config.vllmMemoryUtilMax });
    const layout = options.layout ?? layoutFor(config);
    const now = options.now ?? (() => new Date());
    const env = options.env ?? {};
    this.owner = options.owner ?? "gpu-canary evaluate";
    const audit = options.audit ?? createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone, now });
    this.context = {
      layout,
      audit,
      env,
      ...statusContextOf({ config, layout, now, audit, env, owner: this.owner, probe: options.probe, stores: options.stores }),
      ...(options.fleet ? { fleet: options.fleet } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.onStep ? { onStep: options.onStep } : {}),
      ...(options.useSystemdRun !== undefined ? { useSystemdRun: options.useSystemdRun } : {}),
      ...(options.whisperPollMs !== undefined ? { whisperPollMs: options.whisperPollMs } : {}),
    };
  }

  /** Judge one candidate; malformed input is a usage error (CandidateError, exit 2), everything else a result. */
  async runTest(input: unknown, options: RunTestOptions = {}): Promise<EvaluationResult> {
    const candidate = parseCandidate(input);
    const ctx = this.context;
    const mode = options.mode ?? ctx.config.canaryMode;
    const subsystem = options.subsystem ?? ctx.config.subsystems[0] ?? "gpu_allocation";
    const started = new Date();
    const runId = newRunId(ctx.now());
    const result: EvaluationResult = {
      runId,
      mode,
      status: "error",
      validationPassed: false,
      validationReason: "",
      llmLatencyMs: null,
      candidate,
      subsystem,
      predicted: null,
      measured: null,
      gate: null,
      promotionPath: null,
      startedAt: started.toISOString(),
      finishedAt: started.toISOString(),
    };
    const finish = async (patch: Partial<EvaluationResult>) => {
      Object.assign(result, patch, { finishedAt: new Date().toISOString() });
      await ctx.audit.append({
        event: "run_finished",
        run_id: runId,
        status: result.status,
        mode,
        subsystem,
        candidate: { vllm_memory_util: candidate.vllmMemoryUtil, whisper_model_size: candidate.whisperModelSize },
        reason: result.validationReason,
        ...(result.gate ? { gate: result.gate } : {}),
      });
      return result;
    };

    const bounds = this.testConfig.boundsProblem(candidate.vllmMemoryUtil);
    if (bounds) return finish({ status: "failed", validationReason: bounds });
    let preflight;
    try {
      const spare = mode === "canary" && ctx.config.allowSpareGpu;
      preflight = await runPreflight(candidate, this.preflightDeps(), {
        spare,
        besideSleepingProduction: mode === "canary" && !spare && ctx.config.quiesce === "sleep",
      });
    } catch (error) {
      if (!(error instanceof GpuCanaryError)) throw error;
      return finish({ status: "error", validationReason: `${error.message}${error.hint ? ` (${error.hint})` : ""}` });
    }
    result.predicted = preflight.predicted;
    if (!preflight.ok) return finish({ status: "failed", validationReason: `the predictive pre-flight rejects it: ${preflight.reason}` });
    if (mode === "predictive") return finish({ status: "passed", validationPassed: true, validationReason: preflight.reason });

    let outcome;
    try {
      const target = { intentKind: options.intentKind ?? null, kvTokens: preflight.predicted.kvTokens };
      outcome = await runCanary(ctx, candidate, { runId, subsystem, target });
    } catch (error) {
      // The run's own error says more than a failure to record it (both name their file on a full disk).
      await finish({ status: "error", validationReason: messageOf(error) }).catch(() => undefined);
      if (error instanceof InterruptedError || !(error instanceof GpuCanaryError) || error.kind === "fault") throw error;
      return result;
    }
    const latency = outcome.measured?.e2eP50Ms ?? null;
    await finish({
      status: outcome.status,
      validationPassed: outcome.status === "passed",
      validationReason: outcome.reason,
      llmLatencyMs: latency === null ? null : Math.round(latency * 10) / 10,
      measured: outcome.measured,
      gate: outcome.gate,
    });
    if (outcome.status === "passed") {
      // What the canary ran on: the promotion holds only on a host that still looks like this.
      const fingerprint = await hostFingerprint(ctx);
      result.promotionPath = await writePromotion(ctx.layout.promotionsDir, result, outcome.whisperVerified, fingerprint, new Date());
      await ctx.audit.append({ event: "promotion_written", run_id: runId, path: result.promotionPath });
    }
    return result;
  }

  /** Put a promotion into production's config file, restart and verify it; rolled back by itself when it fails (apply/apply.ts). */
  async apply(promotionRunId: string): Promise<SettingsChangeOutcome> {
    return applyPromotion(this.context, promotionRunId, {
      runId: newRunId(this.context.now()),
      predict: (candidate) => this.predict(candidate),
    });
  }

  /**
   * Go back to the settings applied before the current ones, gated and verified as an apply is;
   * `because`: the out-of-memory line that condemns the apply (production down: at once).
   */
  async rollback(options: { because?: string } = {}): Promise<SettingsChangeOutcome> {
    return rollbackSettings(this.context, { runId: newRunId(this.context.now()), ...options });
  }

  /** Only the arithmetic: the predictive pre-flight for a candidate, audited nowhere (the tuning runner ranks with it). */
  async predict(candidate: Candidate) {
    return runPreflight(candidate, this.preflightDeps(), { spare: false });
  }

  private preflightDeps() {
    const ctx = this.context;
    return {
      config: ctx.config,
      vllmSeenPath: ctx.layout.vllmSeen,
      probe: ctx.probe,
      askVersion: () => ctx.production.version(2000),
      productionPids: async () =>
        new Set(
          (
            await productionServiceOf(ctx)
              .processes()
              .catch(() => [])
          ).map((p) => p.pid),
        ),
      productionEnv: () => productionServiceOf(ctx).environment(),
      now: ctx.now,
    };
  }
}
