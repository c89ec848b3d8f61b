import type { Accounting } from "./vllm-accounting.ts";
import { type ModelShape, kvBytesPerToken } from "./model-config.ts";

const GIB = 1024 ** 3;
const BLOCK = 16;

export interface MemoryInputs {
  /** the total CUDA reports: nvidia-smi memory.total − memory.reserved, in bytes */
  totalBytes: number;
  /** GPU memory of processes other than production vLLM and Whisper */
  othersBytes: number;
  /** Whisper's footprint at the candidate's size */
  whisperBytes: number;
  gpuName: string;
  util: number;
  accounting: Accounting;
  shape: ModelShape;
  weightsBytes: number;
  maxModelLen: number;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  kvCacheDtype: "auto" | "fp8";
  enforceEager?: boolean;
}

export interface MemoryCheck {
  name: "startup_free_memory" | "kv_cache_positive" | "kv_holds_max_model_len" | "fits_with_whisper";
  ok: boolean;
  detail: string;
}

export interface MemoryPrediction {
  requestedBytes: number;
  weightsBytes: number;
  activationBytes: number;
  nonTorchBytes: number;
  cudaGraphBytes: number;
  kvCacheBytes: number;
  kvTokens: number;
  maxConcurrency: number;
  whisperBytes: number;
  freeAtStartBytes: number;
  footprintBytes: number;
  maxNumSeqs: number;
  maxNumBatchedTokens: number;
  checks: MemoryCheck[];
  ok: boolean;
}

/** vLLM's own defaults for the OpenAI server (vllm/engine/arg_utils.py get_batch_defaults). */
export function batchDefaults(totalBytes: number, gpuName: string): { maxNumSeqs: number; maxNumBatchedTokens: number } {
  const big = totalBytes >= 70 * GIB && !/a100/i.test(gpuName);
  return big ? { maxNumSeqs: 1024, maxNumBatchedTokens: 8192 } : { maxNumSeqs: 256, maxNumBatchedTokens: 2048 };
}

/**
 * V0's defaults: 256 sequences; without chunked prefill (on by default only past 32K tokens) a
 * batch holds one whole max-length prompt, so the profiling pass runs max(max_model_len, 2048) tokens.
 */
export function v0BatchDefaults(maxModelLen: number): { maxNumSeqs: number; maxNumBatchedTokens: number } {
  return { maxNumSeqs: 256, maxNumBatchedTokens: maxModelLen > 32768 ? 2048 : Math.max(maxModelLen, 2048) };
}

/** vLLM's own CUDA context and NCCL init, outside its budget (0.61 GiB observed on an idle H100). */
export const VLLM_CONTEXT_BYTES = 0.6 * GIB;

const gib = (bytes: number) => `${(bytes / GIB).toFixed(2)} GiB`;

/**
 * The predictive memory model (predictive-memory.md §0 and §6): vLLM's budget, its KV cache after
 * weights, the activation peak of its profiling pass, non-torch memory and CUDA graphs, and
 * whether it starts, serves one max-length request and fits beside Whisper.
 */
export function predictMemory(input: MemoryInputs): MemoryPrediction {
  const T = input.totalBytes;
  const defaults = input.accounting.v1 ? batchDefaults(T, input.gpuName) : v0BatchDefaults(input.maxModelLen);
  const S = input.maxNumSeqs ?? defaults.maxNumSeqs;
  const Nb = input.maxNumBatchedTokens ?? defaults.maxNumBatchedTokens;
  const shape = input.shape;
  const requested = Math.ceil(input.util * T);
  // The sampler warm-up over max_num_seqs × vocab logits dominates; the forward pass over the batch otherwise.
  const activation = Math.max(9.75 * S * shape.vocabSize * 4, Nb * (3 * shape.intermediateSize + 3 * shape.hiddenSize) * shape.dtypeBytes);
  const nonTorch = (input.accounting.v1 ? 0.13 : 0.05) * GIB;
  const graphs = input.enforceEager ? 0 : 0.3 * GIB;
  const graphsInBudget = input.accounting.cudaGraphsInBudget ? graphs : 0;
  const graphsOnTop = input.accounting.cudaGraphsInBudget ? 0 : graphs;
  const tenants = input.whisperBytes + input.othersBytes;
  const charged = input.accounting.othersChargedToKv ? tenants + VLLM_CONTEXT_BYTES : 0;
  const kv = requested - input.weightsBytes - activation - nonTorch - graphsInBudget - charged;
  const bpt = kvBytesPerToken(shape, input.kvCacheDtype === "fp8" ? 1 : shape.dtypeBytes);
  const blocks = kv > 0 ? Math.floor(kv / (BLOCK * bpt)) : 0;
  const kvTokens = blocks * BLOCK;
  const blocksPerRequest = Math.ceil(input.maxModelLen / BLOCK);
  const maxConcurrency = blocks / blocksPerRequest;
  const freeAtStart = T - tenants - VLLM_CONTEXT_BYTES;
  const margin = (T <= 24 * GIB ? 0.25 : 0.5) * GIB;
  const footprint = requested + VLLM_CONTEXT_BYTES + graphsOnTop;
  const checks: MemoryCheck[] = [];
  if (input.accounting.startupCheck) {
    checks.push({
      name: "startup_free_memory",
      ok: freeAtStart >= requested,
      detail: `vLLM asks for ${gib(requested)} (${input.util} × ${gib(T)}) and would find ${gib(freeAtStart)} free beside Whisper (${gib(input.whisperBytes)}) and other processes (${gib(input.othersBytes)})`,
    });
  }
  checks.push({
    name: "kv_cache_positive",
    ok: kv > 0,
    detail: `the KV cache would get ${gib(kv)} after weights ${gib(input.weightsBytes)}, activations ${gib(activation)}, non-torch ${gib(nonTorch)}${graphsInBudget ? ` and CUDA graphs ${gib(graphsInBudget)}` : ""}`,
  });
  checks.push({
    name: "kv_holds_max_model_len",
    ok: blocks >= blocksPerRequest,
    detail: `${kvTokens} KV tokens for a max model length of ${input.maxModelLen} (concurrency ${maxConcurrency.toFixed(2)}×)`,
  });
  checks.push({
    name: "fits_with_whisper",
    ok: footprint + margin + tenants <= T,
    detail: `vLLM ${gib(footprint)} + Whisper ${gib(input.whisperBytes)} + others ${gib(input.othersBytes)} + margin ${gib(margin)} against ${gib(T)}`,
  });
  return {
    requestedBytes: requested,
    weightsBytes: input.weightsBytes,
    activationBytes: Math.round(activation),
    nonTorchBytes: Math.round(nonTorch),
    cudaGraphBytes: Math.round(graphs),
    kvCacheBytes: Math.round(kv),
    kvTokens,
    maxConcurrency,
    whisperBytes: input.whisperBytes,
    freeAtStartBytes: Math.round(freeAtStart),
    footprintBytes: Math.round(footprint),
    maxNumSeqs: S,
    maxNumBatchedTokens: Nb,
    checks,
    ok: checks.every((c) => c.ok),
  };
}
