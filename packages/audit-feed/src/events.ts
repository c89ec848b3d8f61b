import { z } from "zod";

/** Fields every line has; `run_id` is null for events outside a run (a manual budget reset). */
const base = {
  ts: z.iso.datetime(),
  run_id: z.string().nullable(),
  host: z.string(),
  pid: z.number().int(),
};

const event = <const E extends string, S extends z.ZodRawShape>(name: E, shape: S) =>
  z.looseObject({ ...base, event: z.literal(name), ...shape });

const lockRecord = z.record(z.string(), z.unknown());

/**
 * Every event gpu-canary writes. Appends are checked against this union, so a known event is
 * never written malformed; extra fields are welcome. Readers accept any `event` name (a newer
 * version may write more) as long as the common fields are there.
 */
export const auditEventSchema = z.discriminatedUnion("event", [
  event("lock_acquired", { generation: z.number().int(), owner: z.string(), purpose: z.string().optional() }),
  event("lock_released", { generation: z.number().int() }),
  event("lock_force_released", { evicted: lockRecord.nullable(), generation: z.number().int(), reason: z.string() }),
  event("lock_stale_released", { evicted: lockRecord, reason: z.string() }),
  event("budget_charged", { date: z.string(), seconds: z.number(), seconds_used: z.number(), max_seconds: z.number() }),
  event("budget_reset", { date: z.string(), previous_seconds_used: z.number().nullable(), reason: z.string() }),
  event("gate_refused", { gate: z.string(), reason: z.string() }),
  event("production_stopped", { method: z.string() }),
  event("production_restored", { seconds: z.number().optional() }),
  event("canary_started", { port: z.number().int().optional() }),
  event("canary_healthy", {}),
  event("canary_tested", {}),
  event("canary_stopped", {}),
  event("run_finished", { status: z.string(), mode: z.string() }),
  event("recovery", { action: z.string() }),
  event("intent_created", { intent_id: z.string(), kind: z.string() }),
  event("oom_detected", { kind: z.string(), line: z.string() }),
  event("promotion_written", { path: z.string() }),
]);

export type AuditEvent = z.infer<typeof auditEventSchema>;
export type AuditEventName = AuditEvent["event"];
export const AUDIT_EVENT_NAMES = auditEventSchema.options.map((option) => option.shape.event.value);

/** What a caller appends: the feed fills in ts, host and pid; run_id defaults to null. */
export type AuditEventInput = AuditEvent extends infer E
  ? E extends AuditEvent
    ? Omit<E, "ts" | "host" | "pid" | "run_id"> & { run_id?: string | null }
    : never
  : never;

/** What readers accept: the common fields and any event name. */
export const auditLineSchema = z.looseObject({ ...base, event: z.string().min(1) });
export type AuditLine = z.infer<typeof auditLineSchema>;
