import type { AuditFeed } from "@gpu-canary/audit-feed";
import { percentile } from "@gpu-canary/vllm-client";

export interface WorstCase {
  quiesceSeconds: number;
  canaryTimeoutSeconds: number;
  canaryStopSeconds: number;
  restoreSeconds: number;
  totalSeconds: number;
  /** where each number came from: measured p95 over n runs, or the default */
  basis: string;
}

const LOOKBACK_DAYS = 30;
const DEFAULT_STOP_SECONDS = 5;

/**
 * A quiesced run's worst case: quiesce + canary timeout + canary stop + restore, each the p95
 * of what the audit trail measured on earlier runs (production_stopped, canary_stopped,
 * production_restored carry `seconds`); before any, 5 s for each stop and the restore SLA.
 */
export async function worstCase(
  audit: AuditFeed,
  settings: { canaryTimeoutSeconds: number; restoreSlaSeconds: number },
  now: Date,
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
  const restoreSeconds = p95("production_restored", "restore", settings.restoreSlaSeconds);
  const totalSeconds = Math.round((quiesceSeconds + settings.canaryTimeoutSeconds + canaryStopSeconds + restoreSeconds) * 10) / 10;
  return {
    quiesceSeconds,
    canaryTimeoutSeconds: settings.canaryTimeoutSeconds,
    canaryStopSeconds,
    restoreSeconds,
    totalSeconds,
    basis: parts.join(" + "),
  };
}
