import { join } from "node:path";

/** Every file gpu-canary reads or writes, derived from KLR_HOME (docs/architecture.md, "Files and formats"). */
export interface Layout {
  home: string;
  locksDir: string;
  gpuLock: string;
  watchdogReport: string;
  /** each fired watchdog's report, by run id: none is lost to a later firing */
  watchdogReports: string;
  maintenanceDir: string;
  vllmSeen: string;
  /** what is applied to production's vLLM config file now, and what was before (applied.json) */
  appliedFile: string;
  /** every version of production's vLLM config file that an apply wrote, and the one before the first */
  vllmHistoryDir: string;
  rateLimits: string;
  budgetFile: (date: string) => string;
  auditDir: string;
  auditFile: (date: string) => string;
  intentsDir: string;
  intentsProcessing: string;
  intentsProcessed: string;
  intentsFailed: string;
  promotionsDir: string;
  modelPath: string;
  daemonTokenFile: string;
}

const DATE = /^\d{8}$/;

function checkDate(date: string): string {
  if (!DATE.test(date)) throw new Error(`expected a YYYYMMDD date, got ${JSON.stringify(date)}`);
  return date;
}

export function layoutFor(settings: { home: string; modelPath: string; daemonTokenFile: string }): Layout {
  const { home } = settings;
  const locksDir = join(home, ".kloros", "locks");
  const maintenanceDir = join(home, ".kloros", "maintenance");
  const auditDir = join(home, "out", "orchestration", "epochs");
  const intentsDir = join(home, "out", "orchestration", "intents");
  return {
    home,
    locksDir,
    gpuLock: join(locksDir, "gpu_maintenance.lock"),
    watchdogReport: join(locksDir, "gpu_maintenance.watchdog.json"),
    watchdogReports: join(locksDir, "watchdog-reports"),
    maintenanceDir,
    vllmSeen: join(maintenanceDir, "vllm_seen.json"),
    appliedFile: join(home, ".kloros", "vllm", "applied.json"),
    vllmHistoryDir: join(home, ".kloros", "vllm", "history"),
    rateLimits: join(maintenanceDir, "rate_limits.json"),
    budgetFile: (date) => join(maintenanceDir, `gpu_budget_${checkDate(date)}.json`),
    auditDir,
    auditFile: (date) => join(auditDir, `gpu_canary_${checkDate(date)}.jsonl`),
    intentsDir,
    intentsProcessing: join(intentsDir, "processing"),
    intentsProcessed: join(intentsDir, "processed"),
    intentsFailed: join(intentsDir, "failed"),
    promotionsDir: join(home, "out", "promotions"),
    modelPath: settings.modelPath,
    daemonTokenFile: settings.daemonTokenFile,
  };
}
