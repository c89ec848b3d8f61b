import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import { readArmFile, watchdogRunning } from "@gpu-canary/vllm-control";
import * as z from "zod";
import type { RunContext } from "../context.ts";

// The restore watchdog as a run and recovery see it: its arm file, whether it still runs, its reports.

const reportSchema = z.looseObject({
  run_id: z.string(),
  fired_at: z.string(),
  reason: z.string(),
  production_serving_at: z.string().nullable(),
  production_was_serving: z.boolean().optional(),
  error: z.string().nullable().optional(),
  whisper_restored: z.boolean().nullable().optional(),
  /** the wait for the Whisper it switched back to hold its memory steady, before production's start */
  whisper_steady: z
    .object({ steady: z.boolean(), readings_mib: z.array(z.number().nullable()), seconds: z.number().nullable() })
    .nullable()
    .optional(),
  /** when its watchdog_fired event was written */
  audited_at: z.string().optional(),
});

export function armFilePath(locksDir: string): string {
  return join(locksDir, "gpu_maintenance.watchdog.arm.json");
}

/** This run's own report file (run ids are file-name safe here, but never trusted to be). */
export function runReportPath(reportsDir: string, runId: string): string {
  return join(reportsDir, `${runId.replace(/[^A-Za-z0-9._-]/g, "_")}.json`);
}

/**
 * A watchdog still armed for this run fires within moments of its armer's death: let it finish
 * rather than race it — but only while it runs (a watchdog that died leaves its arm file behind).
 */
export async function waitForWatchdog(armFile: string, runId: string | undefined, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && existsSync(armFile) && (await watchdogRunning(armFile))) {
    const arm = await readArmFile(armFile).catch(() => null);
    if (arm === null || arm.disarmed || (runId !== undefined && arm.run_id !== runId)) return;
    await sleep(100);
  }
}

type Report = z.infer<typeof reportSchema>;

/** The watchdog writes no audit (the trail may be what failed): its report becomes a `watchdog_fired` event here, once. */
export async function auditReport(ctx: RunContext, path: string, report: Report): Promise<void> {
  if (report.audited_at) return;
  await ctx.audit.append({
    event: "watchdog_fired",
    run_id: report.run_id,
    fired_at: report.fired_at,
    reason: report.reason,
    production_serving_at: report.production_serving_at,
    error: report.error ?? null,
    ...(report.production_was_serving !== undefined ? { production_was_serving: report.production_was_serving } : {}),
    ...(report.whisper_restored != null ? { whisper_restored: report.whisper_restored } : {}),
    ...(report.whisper_steady ? { whisper_steady: report.whisper_steady } : {}),
  });
  await writeJsonAtomic(path, { ...report, audited_at: new Date().toISOString() });
}

/** Every fired watchdog's report not yet in the audit trail goes there (a run, recovery and the daemon's start call this). */
export async function auditWatchdogReports(ctx: RunContext): Promise<void> {
  const names = await readdir(ctx.layout.watchdogReports).catch(() => [] as string[]);
  for (const name of names.filter((n) => n.endsWith(".json"))) {
    const path = join(ctx.layout.watchdogReports, name);
    const report = await readJsonState(path, reportSchema);
    if (report.status === "ok") await auditReport(ctx, path, report.value);
  }
}

/** The watchdog's report for this run: its own file, else the latest report when it is this run's. */
export async function reportFor(ctx: RunContext, runId: string | null): Promise<{ path: string; report: Report } | null> {
  if (runId === null) return null;
  for (const path of [runReportPath(ctx.layout.watchdogReports, runId), ctx.layout.watchdogReport]) {
    const read = await readJsonState(path, reportSchema);
    if (read.status === "ok" && read.value.run_id === runId) return { path, report: read.value };
  }
  return null;
}
