import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import type { AuditFeed } from "@gpu-canary/audit-feed";
import { readApplied } from "@gpu-canary/vllm-control";
import type { ClaimedIntent, IntentInput, IntentStore } from "./intents.ts";
import { type OomEvent, createOomDetector } from "./oom-classifier.ts";
import type { TuningOutcome, TuningRunner } from "./tuning-runner.ts";

/** When production's settings last changed (applied.json's applied_at); null before any apply. An unreadable file fails closed. */
export async function lastAppliedAt(appliedFile: string): Promise<Date | null> {
  const applied = await readApplied(appliedFile);
  return applied?.applied_at ? new Date(applied.applied_at) : null;
}

/**
 * Work one claimed intent through the runner. A run the window refused waits for the next
 * opening (back to pending), as does every intent of a dry run; an error goes to failed/; every
 * other decision is processed.
 */
export async function workIntent(
  deps: { store: IntentStore; runner: TuningRunner },
  claimed: ClaimedIntent,
  options: { dryRun?: boolean } = {},
): Promise<{ outcome: TuningOutcome | null; state: "pending" | "processed" | "failed"; error?: string }> {
  let outcome: TuningOutcome;
  try {
    outcome = await deps.runner.run(claimed.intent, options);
  } catch (error) {
    const message = messageOf(error);
    if (options.dryRun) {
      await deps.store.release(claimed);
      return { outcome: null, state: "pending", error: message };
    }
    // Stopped by a signal (production restored first): the intent is not done; it waits again.
    if (error instanceof GpuCanaryError && error.code === "INTERRUPTED") {
      await deps.store.release(claimed);
      return { outcome: null, state: "pending", error: message };
    }
    await deps.store.finish(claimed, "failed", { status: "error", reason: message });
    return { outcome: null, state: "failed", error: message };
  }
  // A dry run decides nothing: the intent waits for a real run, as it was.
  if (outcome.status === "deferred" || options.dryRun) {
    await deps.store.release(claimed);
    return { outcome, state: "pending" };
  }
  const state = outcome.status === "error" ? "failed" : "processed";
  await deps.store.finish(claimed, state, {
    status: outcome.status,
    reason: outcome.reason,
    run_id: outcome.result?.runId ?? null,
    promotion: outcome.result?.promotionPath ?? null,
  });
  return { outcome, state };
}

export interface ObservedEvent extends OomEvent {
  intentId: string | null;
  merged: boolean;
  /** why it was not known when production's settings last changed (applied.json unreadable): the event got an intent of its own */
  appliedUnknown?: string;
}

/** Turn vLLM log lines into out-of-memory events, audited, each an intent unless dry-run. */
export function createObserver(deps: {
  store: IntentStore;
  audit: AuditFeed;
  subsystem: string;
  now?: () => Date;
  quietMs?: number;
  /** when production's settings last changed (applied.json): an event after it is never merged into an intent before it */
  appliedAt?: () => Promise<Date | null>;
}) {
  const detector = createOomDetector({
    ...(deps.now ? { now: deps.now } : {}),
    ...(deps.quietMs !== undefined ? { quietMs: deps.quietMs } : {}),
  });
  return {
    async line(text: string, options: { dryRun?: boolean } = {}): Promise<ObservedEvent | null> {
      const event = detector.feed(text);
      if (!event) return null;
      if (options.dryRun) return { ...event, intentId: null, merged: false };
      await deps.audit.append({ event: "oom_detected", kind: event.kind, line: event.line });
      const evidence = event.account === null ? event.line : `${event.line}\nvLLM's memory account of that start: ${event.account}`;
      const input: IntentInput = { kind: event.kind, subsystem: deps.subsystem, evidence };
      let notBefore: Date | null = null;
      let appliedUnknown: string | undefined;
      try {
        notBefore = (await deps.appliedAt?.()) ?? null;
      } catch (error) {
        // Not knowing when production last changed, the event starts an intent of its own rather than join one
        // that may be from before a change: at worst an intent too many, never an event lost.
        appliedUnknown = messageOf(error);
      }
      const created = await deps.store.create(input, { notBefore, alone: appliedUnknown !== undefined });
      if (!created.merged) await deps.audit.append({ event: "intent_created", intent_id: created.intent.id, kind: event.kind });
      return { ...event, intentId: created.intent.id, merged: created.merged, ...(appliedUnknown === undefined ? {} : { appliedUnknown }) };
    },
  };
}
