export { canaryArgv, launchCanary, splitCommand } from "./canary-launcher.ts";
export { findExecutable, vllmExecutable } from "./executable.ts";
export { checkVllmCommand } from "./vllm-version.ts";
export type { VllmCommandCheck } from "./vllm-version.ts";
export type { CanaryProcess, CanarySettings } from "./canary-launcher.ts";
export { launchCanaryUnit } from "./canary-unit.ts";
export type { CanaryUnitOptions } from "./canary-unit.ts";
export { ControlError } from "./errors.ts";
export type { ControlErrorCode } from "./errors.ts";
export { portState } from "./ports.ts";
export type { PortState } from "./ports.ts";
export { descendants, groupMembers, isAlive, listenersOf, readEnviron, readProc, stopProcessGroup } from "./procfs.ts";
export type { ProcInfo } from "./procfs.ts";
export { createProductionService } from "./production-service.ts";
export type { ProductionService, ProductionServiceDeps, ServiceManager } from "./production-service.ts";
export { productionServes, putBackSettings, restoreProduction, restoreUnlessServing, servedUtilization } from "./restore.ts";
export type { Restored, SettingsRestore } from "./restore.ts";
export { appliedEntrySchema, appliedSchema, historyFileName, keepInHistory, readApplied, writeApplied } from "./applied-settings.ts";
export type { Applied, AppliedEntry } from "./applied-settings.ts";
export type { RestorePlan } from "./restore.ts";
export { runOperatorCommand } from "./shell.ts";
export { armWatchdog, armFileSchema, readArmFile, watchdogLogPath, watchdogPidPath, watchdogRunning } from "./watchdog.ts";
export { chooseWatchdogLaunch, hostLaunchFacts, lingerEnabled, userManagerRuntimeDir } from "./watchdog-launch.ts";
export type { LaunchFacts, WatchdogLaunch } from "./watchdog-launch.ts";
export type { ArmFile, ArmOptions, Watchdog, WatchdogReport, WhisperBack } from "./watchdog.ts";
export {
  STEADY_DEFAULTS,
  readingsAgree,
  switchWhisper,
  waitWhisperSteady,
  whisperConfigured,
  whisperFootprint,
  whisperProcesses,
} from "./whisper.ts";
export type { SteadyOptions, SteadyWhisper, WhisperControlDeps } from "./whisper.ts";
export { productionLogTail } from "./production-log.ts";
export type { ProductionLogSource } from "./production-log.ts";
export { KV_CACHE_MEMORY_FLAG, setsKvCacheBytes, withRealVllmFlags } from "./vllm-flags.ts";
export {
  TUNED_FLAGS,
  commandLineProblems,
  execStartArgvs,
  readVllmConfig,
  withGpuMemoryUtilization,
  writeVllmConfig,
} from "./vllm-config-file.ts";
export type { VllmConfigFile } from "./vllm-config-file.ts";
