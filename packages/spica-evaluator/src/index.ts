export { ModelFolderError, estimateParams, kvBytesPerToken, readModelShape, shapeOf } from "./predictive/model-config.ts";
export type { ModelShape } from "./predictive/model-config.ts";
export { readWeightBytes } from "./predictive/weights.ts";
export type { WeightBytes } from "./predictive/weights.ts";
export { accountingFor } from "./predictive/vllm-accounting.ts";
export type { Accounting } from "./predictive/vllm-accounting.ts";
export { VLLM_CONTEXT_BYTES, batchDefaults, predictMemory } from "./predictive/memory-model.ts";
export type { MemoryCheck, MemoryInputs, MemoryPrediction } from "./predictive/memory-model.ts";
export { WHISPER_FP16_GIB, whisperBytes } from "./predictive/whisper-footprint.ts";
