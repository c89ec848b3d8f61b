export { SpicaGPUAllocation, newRunId } from "./spica-gpu-allocation.ts";
export type { RunTestOptions, SpicaOptions } from "./spica-gpu-allocation.ts";
export { GPUAllocationTestConfig } from "./test-config.ts";
export type { GPUAllocationTestConfigOptions } from "./test-config.ts";
export { CandidateError, candidateJson, candidateSchema, parseCandidate } from "./candidate.ts";
export type { Candidate } from "./candidate.ts";
export { exitCodeOfResult, loadSummary, resultJson } from "./result.ts";
export type { EvaluationMode, EvaluationResult, EvaluationStatus, Measured, MeasuredLoad } from "./result.ts";
export { recover, recoverIfCrashed } from "./recover.ts";
export { APPLY_SUBSYSTEM, applyWorstCase } from "./apply/change-settings.ts";
export type { SettingsChangeOutcome } from "./apply/change-settings.ts";
// What is applied to production, for the apps (they reach vllm-control through the evaluator).
export { readApplied } from "@gpu-canary/vllm-control";
export type { Applied, AppliedEntry } from "@gpu-canary/vllm-control";
export { armFilePath, auditWatchdogReports } from "./canary/watchdog-reports.ts";
export type { RecoveryOutcome } from "./recover.ts";
export {
  PROMOTION_STATES,
  PromotionNotFoundError,
  listPromotions,
  promotionFile,
  promotionPassSchema,
  promotionSchema,
  readPromotion,
  sameHost,
  setPromotionState,
  writePromotion,
} from "./promotions.ts";
export type { Promotion, PromotionListing, PromotionPass, PromotionState } from "./promotions.ts";
export { readHostSummary } from "./host-summary.ts";
export type { HostSummary } from "./host-summary.ts";
export {
  compareEvidence,
  decidingRule,
  promotionEvidence,
  provenHere,
  rankByEvidence,
  rankPromotions,
  rankingJson,
  whyBefore,
} from "./promotion-rank.ts";
export type { RankRule, RankedEvidence } from "./promotion-rank.ts";
export { fingerprintDifferences, fingerprintSchema, hostFingerprint } from "./promotion-fingerprint.ts";
export type { Fingerprint } from "./promotion-fingerprint.ts";
export {
  canaryClient,
  localStoresOf,
  managerOf,
  policyOf,
  productionClient,
  productionServiceOf,
  restorePlanOf,
  statusContextOf,
} from "./context.ts";
export type { PolicyStores, RunContext } from "./context.ts";
export type { FleetGate, FleetSlotHold } from "./fleet-gate.ts";
export { loggedProductionStart, worstCase } from "./canary/worst-case.ts";
export { lastStartSeconds } from "./canary/production-start.ts";
export type { WorstCase } from "./canary/worst-case.ts";
export { checkGates } from "./canary/gates.ts";
export type { CanaryPath, GateName, Refusal } from "./canary/gates.ts";
export { judge, testUnderLoad } from "./canary/canary-test.ts";
export type { CanaryEvidence, Verdict, VerdictLimits } from "./canary/canary-test.ts";
export { planLoad, shapeFromMetrics } from "./canary/load-shape.ts";
export type { LoadPlan, ProductionShape } from "./canary/load-shape.ts";
export { baselineFromMetrics, observeProduction } from "./canary/production-observed.ts";
export type { ProductionBaseline } from "./canary/production-observed.ts";
export { runPreflight } from "./predictive/preflight.ts";
export type { Prediction, PreflightResult } from "./predictive/preflight.ts";
export { readVllmSeen, rememberVllmSeen } from "./predictive/vllm-seen.ts";
export { ModelFolderError, estimateParams, kvBytesPerToken, readModelShape, shapeOf } from "./predictive/model-config.ts";
export type { ModelShape } from "./predictive/model-config.ts";
export { readWeightBytes } from "./predictive/weights.ts";
export type { WeightBytes } from "./predictive/weights.ts";
export { accountingFor } from "./predictive/vllm-accounting.ts";
export type { Accounting } from "./predictive/vllm-accounting.ts";
export { VLLM_CONTEXT_BYTES, batchDefaults, predictMemory } from "./predictive/memory-model.ts";
export type { MemoryCheck, MemoryInputs, MemoryPrediction } from "./predictive/memory-model.ts";
export { WHISPER_FP16_GIB, whisperBytes } from "./predictive/whisper-footprint.ts";
export { isUnavailable, statusDocument } from "./status.ts";
export type { StatusDocument, StatusPart } from "./status.ts";
