import type { AuditFeed } from "@gpu-canary/audit-feed";
import { percentile } from "@gpu-canary/vllm-client";
import { type ProductionLogSource, productionLogTail } from "@gpu-canary/vllm-control";
import { lastStartSeconds } from "./production-start.ts";

export interface WorstCase {
  quiesceSeconds: number;
  canaryTimeoutSeconds: number;
  canaryStopSeconds: number;
  restoreSeconds: number;
  /** a run that switches Whisper: there and back, each its commands plus the steady wait's timeout; else 0 */
  whisperSeconds: number;
  /** false while no restore was ever measured (the restore SLA stands in for it) */
  restoreMeasured: boolean;
  totalSeconds: number;
  /** the downtime of the worst case where part of the run has production serving (an apply's verification); else totalSeconds */
  downtimeSeconds?: number;
  /** where each number came from: measured p95 over n runs, or the default */
  basis: string;
}

const LOOKBACK_DAYS = 30;
/** A slow restore this recent is never averaged away by faster ones before it. */
const SLOWEST_OF_DAYS = 7;
const DEFAULT_STOP_SECONDS = 5;

/**
 * A quiesced run's worst case: quiesce + canary timeout + canary stop + restore, each the p95
 * of what the audit trail measured on earlier runs (production_stopped, canary_stopped,
 * production_restored carry `seconds`); before any, 5 s for each stop and the restore SLA. A run
 * that switches Whisper adds two switches (there, and back before production restarts), each the
 * p95 of the Whisper commands (whisper_switched's `commands_seconds`, 5 s before any) plus the
 * whole steady wait it may take (KLR_WHISPER_STEADY_TIMEOUT): no vLLM starts before it. The
 * restore is never below the slowest of the last seven nights nor production's last start as its
 * log shows it: a real vLLM loads its weights in 30–120 s, and fast restores before a slow one
 * must not let the next run overrun its budget.
 */
export async function worstCase(
  audit: AuditFeed,
  settings: { canaryTimeoutSeconds: number; restoreSlaSeconds: number },
  now: Date,
  /** production's last start as its log shows it (production-start.ts), when known */
  productionStartSeconds: number | null = null,
  /** the run switches Whisper, whose steady wait may take this long */
  whisper: { steadyTimeoutSeconds: number } | null = null,
): Promise<WorstCase> {
  const since = new Date(now.getTime() - LOOKBACK_DAYS * 86_400_000);
  const events = await audit.query({ since });
  const seconds = (name: string) =>
    events.filter((e) => e.event === name && typeof e.seconds === "number" && Number.isFinite(e.seconds)).map((e) => e.seconds as number);
  const parts: string[] = [];
  const p95 = (name: string, label: string, fallback: number) => {
    const values = seconds(name);
    const value = percentile(values, 95);
    if (value === null) {
      parts.push(`${label} ${fallback} s (default)`);
      return fallback;
    }
    const rounded = Math.round(value * 10) / 10;
    parts.push(`${label} ${rounded} s (p95 of ${values.length})`);
    return rounded;
  };
  const quiesceSeconds = p95("production_stopped", "quiesce", DEFAULT_STOP_SECONDS);
  parts.push(`canary timeout ${settings.canaryTimeoutSeconds} s`);
  const canaryStopSeconds = p95("canary_stopped", "canary stop", DEFAULT_STOP_SECONDS);
  const recentCutoff = now.getTime() - SLOWEST_OF_DAYS * 86_400_000;
  const recentRestores = events
    .filter((e) => e.event === "production_restored" && typeof e.seconds === "number" && Date.parse(e.ts) >= recentCutoff)
    .map((e) => e.seconds as number);
  let restoreMeasured = seconds("production_restored").length > 0;
  let restoreSeconds = p95("production_restored", "restore", settings.restoreSlaSeconds);
  const slowest = Math.round(Math.max(0, ...recentRestores) * 10) / 10;
  if (slowest > restoreSeconds) {
    parts[parts.length - 1] = `restore ${slowest} s (the slowest of the last ${SLOWEST_OF_DAYS} days)`;
    restoreSeconds = slowest;
  }
  const logged = productionStartSeconds === null ? 0 : Math.round(productionStartSeconds * 10) / 10;
  // A floor only: the log misses the seconds before vLLM's first line, so it never lowers the estimate.
  if (logged > restoreSeconds) {
    parts[parts.length - 1] = `restore ${logged} s (production's last start in its log)`;
    restoreSeconds = logged;
    restoreMeasured = true;
  }
  let whisperSeconds = 0;
  if (whisper) {
    const values = events
      .filter((e) => e.event === "whisper_switched" && typeof e.commands_seconds === "number" && Number.isFinite(e.commands_seconds))
      .map((e) => e.commands_seconds as number);
    const p = percentile(values, 95);
    const each = p === null ? DEFAULT_STOP_SECONDS : Math.round(p * 10) / 10;
    whisperSeconds = Math.round(2 * (each + whisper.steadyTimeoutSeconds) * 10) / 10;
    parts.push(
      `Whisper there and back 2 × (commands ${each} s (${p === null ? "default" : `p95 of ${values.length}`}) + steady wait ≤ ${whisper.steadyTimeoutSeconds} s)`,
    );
  }
  const totalSeconds =
    Math.round((quiesceSeconds + settings.canaryTimeoutSeconds + canaryStopSeconds + restoreSeconds + whisperSeconds) * 10) / 10;
  return {
    quiesceSeconds,
    canaryTimeoutSeconds: settings.canaryTimeoutSeconds,
    canaryStopSeconds,
    restoreSeconds,
    whisperSeconds,
    restoreMeasured,
    totalSeconds,
    basis: parts.join(" + "),
  };
}

/**
 * When the restore watchdog fires: at the worst case plus a margin, or earlier when the budget
 * left would otherwise not cover the restore that follows — so even a run that hangs ends with
 * production back inside the night's budget. The part of the worst case production serves through
 * (an apply's verification) costs no budget: it is added back.
 */
export function watchdogDeadlineSeconds(worst: WorstCase, budgetLeftSeconds: number): number {
  const serving = worst.totalSeconds - (worst.downtimeSeconds ?? worst.totalSeconds);
  return Math.max(0, Math.min(worst.totalSeconds + 10, budgetLeftSeconds - worst.restoreSeconds + serving));
}

/** Production's last start from its log (KLR_VLLM_LOG), in seconds; null when the log does not say. */
export async function loggedProductionStart(config: { vllmLog: ProductionLogSource; vllmService: string }): Promise<number | null> {
  const lines = await productionLogTail(config.vllmLog, config.vllmService);
  return lines === null ? null : lastStartSeconds(lines);
}
