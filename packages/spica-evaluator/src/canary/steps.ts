import { InterruptedError, messageOf } from "@gpu-canary/errors";
import type { AuditEventInput, AuditEventName } from "@gpu-canary/audit-feed";
import type { GpuLockRecord } from "@gpu-canary/gpu-lock";

export type JournalPatch = Partial<GpuLockRecord>;
export type AuditFields = Record<string, unknown>;

/**
 * One step of a run. Its phase (and `journal`'s fields) reach the lock's journal durably before
 * it acts, and its undo is registered before it acts too — a step cut short may have half-acted
 * (a stop command that stopped production and then failed), so its undo must run all the same.
 */
export interface Step<S> {
  phase: string;
  /** skipped when false (a Whisper that does not change size) */
  when?: (state: S) => boolean;
  /** the progress line as it starts */
  says?: (state: S) => string;
  /** journal fields written with the phase; a signal during that write takes them back */
  journal?: (state: S) => JournalPatch;
  /** acts; what it returns is the audit event's fields */
  do: (state: S) => Promise<AuditFields | undefined>;
  /** the audit event of `do`, with the run id and what `do` returned */
  event?: AuditEventName;
  undo?: Undo<S>;
}

export interface Undo<S> {
  phase: string;
  /** its progress line, if it has one to say (null: it has nothing to do this time) */
  says?: (state: S) => string | null;
  /** returns the audit event's fields, or a note for the run's reason; throws to fail the run */
  do: (state: S) => Promise<AuditFields | string | undefined>;
  event?: AuditEventName;
}

/** An undo whose failure leaves nothing safe to undo after it (production is not back): unwinding stops there. */
export class HaltUnwind extends Error {
  constructor(override readonly cause: Error) {
    super(cause.message);
    this.name = "HaltUnwind";
  }
}

export interface StepIo {
  runId: string;
  journal: (patch: JournalPatch) => Promise<void>;
  audit: (event: AuditEventInput) => Promise<unknown>;
  /** each step and undo as it starts: its phase, and its line when it `says` one */
  progress: (phase: string, line: string | null) => void;
  /** a signal or the lock's loss: no step starts after it; the undos all run */
  signal?: AbortSignal;
}

export interface StepsOutcome {
  /** the first failure: a step's, the abort, or an undo's */
  failure: Error | null;
  /** undos that could not be done and did not fail the run (Whisper not back) */
  notes: string[];
  /** the steps that acted, in order */
  done: string[];
}

export interface ProgressSinks {
  onProgress?: (line: string) => void;
  onStep?: (phase: string, line: string | null) => void;
}

/** A phase as it begins: to onStep with its line when it listens, else only the line, to onProgress. */
export function announce(ctx: ProgressSinks, phase: string, line: string | null): void {
  if (ctx.onStep) ctx.onStep(phase, line);
  else if (line !== null) ctx.onProgress?.(line);
}

/** The io of a run: its lock's journal, the audit trail, the progress lines and the run's signal. */
export function stepIoOf(
  ctx: ProgressSinks & { audit: { append(event: AuditEventInput): Promise<unknown> }; signal?: AbortSignal },
  runId: string,
  handle: { journal(patch: JournalPatch): Promise<void> },
): StepIo {
  return {
    runId,
    journal: (patch) => handle.journal(patch),
    audit: (event) => ctx.audit.append(event),
    progress: (phase, line) => announce(ctx, phase, line),
    ...(ctx.signal ? { signal: ctx.signal } : {}),
  };
}

const asError = (error: unknown) => (error instanceof Error ? error : new Error(messageOf(error)));

/**
 * Run the steps in order, then undo every step that began, in reverse — on success as on any way
 * out (a failure, a timeout, a signal, the lock's loss). No signal cuts the undoing short. A
 * journal write that fails while undoing (the lock was taken away) does not stop it: the outage
 * is still repaired and charged, and the failure is reported afterwards.
 */
export async function runSteps<S>(steps: Step<S>[], state: S, io: StepIo): Promise<StepsOutcome> {
  const undos: Undo<S>[] = [];
  const done: string[] = [];
  const notes: string[] = [];
  let failure: Error | null = null;
  let phase: string | null = null;
  try {
    for (const step of steps) {
      if (step.when && !step.when(state)) continue;
      io.signal?.throwIfAborted();
      const patch = { ...step.journal?.(state), phase: step.phase };
      await io.journal(patch);
      if (io.signal?.aborted) {
        // Nothing acted yet: the journal must not claim it did.
        const back = Object.fromEntries(Object.keys(patch).map((key) => [key, undefined]));
        await io.journal({ ...back, ...(phase ? { phase } : {}) });
        io.signal.throwIfAborted();
      }
      phase = step.phase;
      if (step.undo) undos.push(step.undo);
      io.progress(step.phase, step.says?.(state) ?? null);
      const fields = await step.do(state);
      done.push(step.phase);
      if (step.event && fields) await io.audit(eventOf(step.event, io.runId, fields));
    }
  } catch (error) {
    failure = abortReason(io.signal) ?? asError(error);
  }
  for (const undo of undos.reverse()) {
    await io.journal({ phase: undo.phase }).catch((error: unknown) => (failure ??= asError(error)));
    io.progress(undo.phase, undo.says?.(state) ?? null);
    try {
      const result = await undo.do(state);
      if (typeof result === "string") notes.push(result);
      else if (undo.event && result) await io.audit(eventOf(undo.event, io.runId, result));
    } catch (error) {
      if (error instanceof HaltUnwind) return { failure: error.cause, notes, done };
      failure ??= asError(error);
    }
  }
  return { failure: abortReason(io.signal) ?? failure, notes, done };
}

/** The audit feed checks each event's fields against its schema as it appends. */
const eventOf = (event: AuditEventName, runId: string, fields: AuditFields) => ({ event, run_id: runId, ...fields }) as AuditEventInput;

/** Why the signal aborted, typed: a signal's InterruptedError (exit 128 + n), or the lock's loss; null when it did not. */
export function abortReason(signal: AbortSignal | undefined): Error | null {
  if (!signal?.aborted) return null;
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  if (typeof reason === "string" && reason.startsWith("SIG")) return new InterruptedError(reason as NodeJS.Signals, "the canary run");
  return new Error(`the canary run was aborted: ${messageOf(reason)}`);
}
