import * as z from "zod";

/** Fields every line has; `run_id` is null for events outside a run (a manual budget reset). */
const base = {
  ts: z.iso.datetime(),
  run_id: z.string().nullable(),
  host: z.string(),
  pid: z.number().int(),
};

const lockRecord = z.record(z.string(), z.unknown());

/**
 * Every event gpu-canary writes, by name, with its own fields. Appends are checked against
 * these, so a known event is never written malformed; extra fields are kept. Readers accept
 * any `event` name (a newer version may write more) as long as the common fields are there.
 */
const EVENT_FIELDS = {
  lock_acquired: { generation: z.number().int(), owner: z.string(), purpose: z.string().optional() },
  lock_released: { generation: z.number().int() },
  lock_force_released: {
    evicted: lockRecord.nullable(),
    generation: z.number().int(),
    reason: z.string(),
    /** an unreadable record: why, and the name it was moved to (its content kept) */
    unreadable: z.object({ reason: z.string(), moved_to: z.string() }).optional(),
  },
  lock_stale_released: { evicted: lockRecord, reason: z.string() },
  budget_charged: { date: z.string(), seconds: z.number(), seconds_used: z.number(), max_seconds: z.number() },
  budget_reset: { date: z.string(), previous_seconds_used: z.number().nullable(), reason: z.string() },
  gate_refused: { gate: z.string(), reason: z.string() },
  /** `seconds`: how long the quiesce took (the worst case's p95 reads it) */
  production_stopped: { method: z.string(), seconds: z.number().optional() },
  production_restored: { seconds: z.number().optional() },
  canary_started: { port: z.number().int().optional() },
  canary_healthy: {},
  canary_tested: { samples: z.number().int().optional() },
  canary_stopped: { seconds: z.number().optional() },
  /** Whisper changed size for a canary, and what nvidia-smi showed afterwards */
  /** `commands_seconds`: the stop and start commands (the worst case's p95 reads it); `steady_readings_mib`: nvidia-smi's readings until two agreed */
  whisper_switched: {
    from: z.string(),
    to: z.string(),
    seen: z.string().optional(),
    commands_seconds: z.number().optional(),
    steady_readings_mib: z.array(z.number().nullable()).optional(),
  },
  run_finished: { status: z.string(), mode: z.string(), reason: z.string().optional() },
  recovery: { action: z.string() },
  /** the restore watchdog acted for a run (recorded when recovery reads its report: the watchdog itself writes no audit) */
  watchdog_fired: {
    fired_at: z.string(),
    reason: z.string(),
    production_serving_at: z.string().nullable(),
    error: z.string().nullable(),
  },
  intent_created: { intent_id: z.string(), kind: z.string() },
  oom_detected: { kind: z.string(), line: z.string() },
  promotion_written: { path: z.string() },
  /** production's vLLM config file changed and verified (`apply`, `rollback`): from and to what utilization */
  settings_applied: { from: z.number().nullable(), to: z.number().nullable(), history_file: z.string() },
  /** an apply whose verification failed, put back: production serves `to` again */
  settings_rolled_back: { from: z.number().nullable(), to: z.number().nullable(), reason: z.string() },
  /** the tuning runner's decision on an intent: promoted, ranked, no_fit, deferred, refused, failed, error */
  /** a fleet maintenance slot freed by its host's recovery, or by an operator's `fleet release HOST --force` */
  fleet_slot_released: { runs: z.array(z.string()), forced: z.boolean(), reason: z.string(), holder_host: z.string().optional() },
  /** an operator started (`fleet rollout RUN_ID`) or resumed (`fleet rollout resume ID`) a rollout of a promotion over the fleet */
  fleet_rollout_started: { rollout_id: z.string(), wave: z.number().int() },
  fleet_rollout_resumed: { rollout_id: z.string(), reason: z.string() },
  /** this host's gpu-canaryd worked its part of a rollout: applied, rolled_back, failed, refused or skipped */
  fleet_rollout_host: { rollout_id: z.string(), result: z.string(), reason: z.string() },
  tuning_decision: { intent_id: z.string().nullable(), outcome: z.string() },
} satisfies Record<string, z.ZodRawShape>;

type EventFields = typeof EVENT_FIELDS;
export type AuditEventName = keyof EventFields;
export const AUDIT_EVENT_NAMES = Object.keys(EVENT_FIELDS) as AuditEventName[];

/** What a caller appends: the feed fills in ts, host and pid; run_id defaults to null; extra fields are kept. */
export type AuditEventInput = {
  [E in AuditEventName]: { event: E; run_id?: string | null; [extra: string]: unknown } & (keyof EventFields[E] extends never
    ? unknown
    : z.input<z.ZodObject<EventFields[E]>>);
}[AuditEventName];

/** A written event: the common fields, the event's own, and any extras. */
export type AuditEvent = AuditEventInput & { ts: string; run_id: string | null; host: string; pid: number; [key: string]: unknown };

const schemas = new Map<string, z.ZodType>(
  Object.entries(EVENT_FIELDS).map(([name, fields]) => [name, z.looseObject({ ...base, event: z.literal(name), ...fields })]),
);

/** Check an event before it is written; throws zod's error for a malformed one (a caller's bug). */
export function parseAuditEvent(value: { event: string; [key: string]: unknown }): AuditEvent {
  const schema = schemas.get(value.event);
  if (!schema) throw new Error(`unknown audit event ${JSON.stringify(value.event)}`);
  return schema.parse(value) as AuditEvent;
}

/** What readers accept: the common fields and any event name. */
export const auditLineSchema = z.looseObject({ ...base, event: z.string().min(1) });
export type AuditLine = z.infer<typeof auditLineSchema>;
