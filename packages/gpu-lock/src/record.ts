import { baseLockRecordSchema } from "@gpu-canary/state-file";
import * as z from "zod";

/**
 * The GPU maintenance lock record. The first five fields alone are valid (hand-written, or from
 * the system this replaces): PID-only liveness, generation 0, no journal. Journal fields are
 * written by the holder as the run goes on; recovery reads them after a crash.
 */
export const gpuLockRecordSchema = baseLockRecordSchema.extend({
  owner: z.string(),
  expires_at: z.union([z.string(), z.number()]),
  purpose: z.string().optional(),
  run_id: z.string().optional(),
  generation: z.number().int().nonnegative().optional(),
  renewed_at: z.string().optional(),
  /** the run's journal */
  phase: z.string().optional(),
  quiesce: z.enum(["stop", "sleep"]).optional(),
  production_stopped_at: z.string().optional(),
  production_serving_at: z.string().optional(),
  charged_at: z.string().optional(),
  /** the canary's process group, recorded before the canary may run */
  canary_pgid: z.number().int().positive().optional(),
  /** the size Whisper may have been switched to (recovery switches it back) */
  whisper_at: z.string().optional(),
  /** an apply: the config file to put back before production restarts, and what production then serves with */
  settings_restore: z.object({ config_path: z.string(), restore_from: z.string(), gpu_memory_utilization: z.number() }).optional(),
  /** the apply's verification passed and what is applied was recorded: recovery charges, and undoes nothing */
  settings_kept_at: z.string().optional(),
});
export type GpuLockRecord = z.infer<typeof gpuLockRecordSchema>;

/** Epoch milliseconds of a record time: ISO text, or epoch seconds from older writers. */
export function timeOf(value: string | number | undefined): number | null {
  if (value === undefined) return null;
  const ms = typeof value === "number" ? value * 1000 : Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

export function generationOf(record: GpuLockRecord): number {
  return record.generation ?? 0;
}

/** A run that quiesced production and was not charged: only recovery may take its lock. */
export function awaitsRecovery(record: GpuLockRecord): boolean {
  return record.production_stopped_at !== undefined && record.charged_at === undefined;
}

export function describeHolder(record: GpuLockRecord): string {
  const parts = [`PID ${record.pid} on ${record.host}`, `owner ${record.owner}`];
  if (record.run_id) parts.push(`run ${record.run_id}`);
  if (record.purpose) parts.push(record.purpose);
  parts.push(`generation ${generationOf(record)}`);
  return parts.join(", ");
}
