import { type Config, splitArguments } from "@gpu-canary/config";
import { GpuCanaryError } from "@gpu-canary/errors";
import type { Gpu, GpuProbe } from "@gpu-canary/gpu-probe";
import { KV_CACHE_MEMORY_FLAG, setsKvCacheBytes } from "@gpu-canary/vllm-control";
import type { Candidate } from "../candidate.ts";
import { type MemoryPrediction, VLLM_CONTEXT_BYTES, predictMemory } from "./memory-model.ts";
import { readModelShape } from "./model-config.ts";
import { type EngineChoice, accountingFor } from "./vllm-accounting.ts";
import { readVllmSeen, rememberVllmSeen } from "./vllm-seen.ts";
import { readWeightBytes } from "./weights.ts";
import { whisperBytes } from "./whisper-footprint.ts";

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

export interface PreflightDeps {
  config: Config;
  /** $KLR_HOME/.kloros/maintenance/vllm_seen.json */
  vllmSeenPath: string;
  probe: GpuProbe;
  /** production's /version; rejects when production does not answer */
  askVersion: () => Promise<string>;
  /** production vLLM's own PIDs (its unit's or port's process tree), beyond the name match */
  productionPids?: () => Promise<ReadonlySet<number>>;
  /** the environment production runs with, and where it was read (null when it cannot be read) */
  productionEnv?: () => Promise<{ env: Record<string, string>; source: string } | null>;
  now: () => Date;
}

export type Prediction = MemoryPrediction & {
  vllmVersion: string | null;
  versionSource: string;
  /** the engine whose accounting applies */
  vllmEngine: "V0" | "V1";
  whisperBasis: string;
  gpuIndex: number;
};

export interface PreflightResult {
  ok: boolean;
  /** one sentence with the numbers */
  reason: string;
  predicted: Prediction;
  /** for a spare-GPU canary: vLLM alone on the spare GPU */
  spare: Prediction | null;
}

interface GpuUse {
  gpu: Gpu;
  totalBytes: number;
  productionBytes: number;
  whisperMeasuredBytes: number | null;
  othersBytes: number;
}

const gib = (bytes: number) => `${(bytes / GIB).toFixed(2)} GiB`;

function probeFault(message: string): GpuCanaryError {
  return new GpuCanaryError("GPU_NOT_FOUND", message, {
    kind: "fault",
    hint: "check KLR_PRODUCTION_GPU_ID / KLR_SPARE_GPU_ID against `gpu-canary gpus`",
  });
}

function useOf(gpus: Gpu[], index: number, what: string, config: Config, productionPids: ReadonlySet<number>): GpuUse {
  const gpu = gpus.find((g) => g.index === index);
  if (!gpu)
    throw probeFault(`nvidia-smi reports no GPU ${index} (the ${what} GPU); it sees ${gpus.map((g) => g.index).join(", ") || "none"}`);
  if (gpu.memoryTotalMib === null) throw probeFault(`nvidia-smi does not report GPU ${index}'s total memory`);
  const totalBytes = (gpu.memoryTotalMib - (gpu.memoryReservedMib ?? 0)) * MIB;
  const vllm = config.vllmProcess.toLowerCase();
  const whisper = config.whisperProcess.toLowerCase();
  let productionBytes = 0;
  let whisperMeasured: number | null = null;
  let others = 0;
  for (const p of gpu.processes) {
    const bytes = (p.usedMemoryMib ?? 0) * MIB;
    const name = p.name.toLowerCase();
    if (productionPids.has(p.pid) || name.includes(vllm)) productionBytes += bytes;
    else if (name.includes(whisper)) whisperMeasured = (whisperMeasured ?? 0) + bytes;
    else others += bytes;
  }
  return { gpu, totalBytes, productionBytes, whisperMeasuredBytes: whisperMeasured, othersBytes: others };
}

/** The vLLM version whose accounting applies: the setting, production's /version, the last one seen, else none. */
async function resolveVersion(deps: PreflightDeps, use: GpuUse): Promise<{ version: string | null; source: string }> {
  if (deps.config.vllmVersion) return { version: deps.config.vllmVersion, source: "KLR_VLLM_VERSION" };
  try {
    const version = await deps.askVersion();
    await rememberVllmSeen(deps.vllmSeenPath, {
      version,
      seen_at: deps.now().toISOString(),
      gpu_index: use.gpu.index,
      cuda_total_mib: use.totalBytes / MIB,
      production_mib: use.productionBytes > 0 ? use.productionBytes / MIB : undefined,
    });
    return { version, source: "production's /version" };
  } catch (error) {
    if (error instanceof GpuCanaryError && error.code === "STATE_UNREADABLE") throw error;
    const seen = await readVllmSeen(deps.vllmSeenPath);
    if (seen?.version) return { version: seen.version, source: `the last version seen (${seen.seen_at}, vllm_seen.json)` };
    return { version: null, source: "none known" };
  }
}

/**
 * Production's flags that size the KV cache in bytes (under either name: vLLM's log suggests
 * `--kv-cache-memory`, its CLI knows `--kv-cache-memory-bytes`, vllm-project/vllm#52600) make vLLM
 * ignore --gpu-memory-utilization (vllm-project/vllm#21489): the prediction says so, naming the real flag.
 */
function kvBytesNote(config: Pick<Config, "vllmExtraArgs">): string | null {
  const split = config.vllmExtraArgs ? splitArguments(config.vllmExtraArgs) : null;
  if (!split?.ok || !setsKvCacheBytes(split.value)) return null;
  return `KLR_VLLM_EXTRA_ARGS sizes the KV cache with ${KV_CACHE_MEMORY_FLAG}: vLLM then ignores --gpu-memory-utilization, so this prediction for a utilization does not describe it`;
}

/**
 * VLLM_USE_V1 as production runs: its own environment says it first, KLR_VLLM_EXTRA_ENV (what the
 * operator says production runs with, given to the canary too) otherwise.
 */
async function engineChoice(deps: PreflightDeps): Promise<EngineChoice | null> {
  const production = await deps.productionEnv?.().catch(() => null);
  const running = production?.env.VLLM_USE_V1;
  if (production && running !== undefined) return { useV1: running, source: production.source };
  const set = deps.config.vllmExtraEnv?.VLLM_USE_V1;
  return set === undefined ? null : { useV1: set, source: "KLR_VLLM_EXTRA_ENV" };
}

function failures(prediction: MemoryPrediction): string {
  return prediction.checks
    .filter((c) => !c.ok)
    .map((c) => c.detail)
    .join("; ");
}

/**
 * The predictive pre-flight: the candidate on the production GPU (production vLLM's own memory
 * not counted against it, Whisper at the candidate's size), plus vLLM alone on the spare GPU
 * for a spare-GPU canary. No GPU work, no downtime.
 */
export async function runPreflight(
  candidate: Candidate,
  deps: PreflightDeps,
  options: { spare: boolean; besideSleepingProduction?: boolean },
): Promise<PreflightResult> {
  const config = deps.config;
  const [report, pids] = await Promise.all([deps.probe.report(), deps.productionPids?.() ?? Promise.resolve(new Set<number>())]);
  const production = useOf(report.gpus, config.productionGpuId, "production", config, pids);
  const { version, source } = await resolveVersion(deps, production);
  const accounting = accountingFor(version, await engineChoice(deps));
  const shape = await readModelShape(config.modelPath);
  const weights = await readWeightBytes(config.modelPath, shape);
  const whisper = whisperBytes(candidate.whisperModelSize, config.whisperSize, production.whisperMeasuredBytes);
  const maxModelLen = config.maxModelLen ?? shape.maxPositionEmbeddings ?? 4096;
  const common = {
    util: candidate.vllmMemoryUtil,
    accounting,
    shape,
    weightsBytes: weights.bytes,
    maxModelLen,
    kvCacheDtype: config.kvCacheDtype,
    ...(config.maxNumSeqs !== undefined ? { maxNumSeqs: config.maxNumSeqs } : {}),
    ...(config.maxNumBatchedTokens !== undefined ? { maxNumBatchedTokens: config.maxNumBatchedTokens } : {}),
  };
  const extra = {
    vllmVersion: version,
    versionSource: source,
    vllmEngine: accounting.v1 ? ("V1" as const) : ("V0" as const),
    whisperBasis: whisper.basis,
  };
  const predicted: Prediction = {
    ...predictMemory({
      ...common,
      totalBytes: production.totalBytes,
      othersBytes: production.othersBytes,
      whisperBytes: whisper.bytes,
      gpuName: production.gpu.name,
    }),
    ...extra,
    gpuIndex: production.gpu.index,
  };
  let spare: Prediction | null = null;
  if (options.spare) {
    const use = useOf(report.gpus, config.spareGpuId, "spare", config, new Set());
    spare = {
      ...predictMemory({
        ...common,
        totalBytes: use.totalBytes,
        othersBytes: use.othersBytes + use.productionBytes + (use.whisperMeasuredBytes ?? 0),
        whisperBytes: 0,
        gpuName: use.gpu.name,
      }),
      ...extra,
      whisperBasis: "Whisper stays on the production GPU",
      gpuIndex: use.gpu.index,
    };
  }
  const notes = [accounting.note, kvBytesNote(config)].filter((n): n is string => n !== null);
  const notesText = notes.length > 0 ? ` (${notes.join("; ")})` : "";
  if (options.besideSleepingProduction && predicted.ok) {
    // A quiesced canary in sleep mode runs beside what the sleeping production keeps on the card
    // (its CUDA context and graphs): measured on an earlier run, else vLLM's context and graphs.
    const seen = await readVllmSeen(deps.vllmSeenPath).catch(() => null);
    const residue = seen?.sleep_residue_mib != null ? seen.sleep_residue_mib * MIB : VLLM_CONTEXT_BYTES + predicted.cudaGraphBytes;
    const beside = predictMemory({
      ...common,
      totalBytes: production.totalBytes,
      othersBytes: production.othersBytes + residue,
      whisperBytes: whisper.bytes,
      gpuName: production.gpu.name,
    });
    if (!beside.ok) {
      return {
        ok: false,
        reason: `fits GPU ${production.gpu.index}, but not beside the sleeping production's ${gib(residue)} (${seen?.sleep_residue_mib != null ? "measured" : "estimated"}; KLR_QUIESCE=sleep): ${failures(beside)}${notesText}`,
        predicted,
        spare,
      };
    }
  }
  if (!predicted.ok) {
    return { ok: false, reason: `does not fit GPU ${production.gpu.index}: ${failures(predicted)}${notesText}`, predicted, spare };
  }
  if (spare && !spare.ok) {
    return {
      ok: false,
      reason: `fits production's GPU but not the spare GPU ${spare.gpuIndex}: ${failures(spare)}${notesText}`,
      predicted,
      spare,
    };
  }
  return {
    ok: true,
    reason:
      `fits GPU ${production.gpu.index}: vLLM ${gib(predicted.requestedBytes)} leaves a KV cache of ${gib(predicted.kvCacheBytes)} ` +
      `(${predicted.kvTokens} tokens, ${predicted.maxConcurrency.toFixed(2)}× ${maxModelLen}-token requests) beside Whisper ${candidate.whisperModelSize} ` +
      `(${gib(whisper.bytes)}); vLLM ${version ?? "version unknown"} accounting${notesText}`,
    predicted,
    spare,
  };
}
