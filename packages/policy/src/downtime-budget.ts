import { GpuCanaryError } from "@gpu-canary/errors";
import type { ReadResult } from "@gpu-canary/state-file";
import * as z from "zod";
import { type JsonStore, createJsonFileStore } from "./json-store.ts";
import { nightLabel } from "./local-time.ts";

const charge = z.object({ run_id: z.string().min(1), seconds: z.number().nonnegative(), at: z.string() });
const reset = z.looseObject({
  at: z.string(),
  previous_seconds_used: z.number().nullable(),
  previous_charges: z.array(charge).optional(),
  /** what an unreadable file held, so a reset loses nothing */
  previous_text: z.string().optional(),
  previous_problem: z.string().optional(),
  reason: z.string().optional(),
});

/** One night's budget file. `{"seconds_used": 0}` alone is valid (the checklist's emergency reset writes it). */
export const budgetFileSchema = z.looseObject({
  seconds_used: z.number({ error: "must be a number of seconds" }).nonnegative({ error: "must not be negative" }),
  charges: z.array(charge).optional(),
  resets: z.array(reset).optional(),
});
export type BudgetFile = z.infer<typeof budgetFileSchema>;

export interface BudgetStatus {
  date: string;
  secondsUsed: number;
  maxSeconds: number;
  /** never below 0, even after a measured overrun */
  secondsLeft: number;
  exhausted: boolean;
  charges: NonNullable<BudgetFile["charges"]>;
  /** the file exists */
  recorded: boolean;
}

export class BudgetUnreadableError extends GpuCanaryError {
  constructor(location: string, reason: string, date: string) {
    super("BUDGET_UNREADABLE", `the downtime budget ${location} ${reason}`, {
      kind: "fault",
      hint: `quiesced canaries stay stopped until it is repaired: write the true value ({"seconds_used": N}) or start the night over with \`gpu-canary budget reset --yes --date ${date}\``,
      details: { path: location, date },
    });
  }
}

export type BudgetStoreFor = (date: string) => JsonStore<BudgetFile>;

export function fileBudgetStore(pathFor: (date: string) => string): BudgetStoreFor {
  return (date) => createJsonFileStore(pathFor(date), budgetFileSchema, { hint: `gpu-canary budget reset --yes --date ${date}` });
}

const ms = (seconds: number): number => Math.round(seconds * 1000) / 1000;

export interface DowntimeBudget {
  status(date: string): Promise<BudgetStatus>;
  /** the reason names the night and what is left; the caller names what it needs (said once) */
  canAfford(date: string, seconds: number): Promise<{ ok: boolean; status: BudgetStatus; reason: string }>;
  /** charge a run's measured downtime once; a second charge for the same run changes nothing */
  charge(date: string, runId: string, seconds: number): Promise<{ charged: boolean; status: BudgetStatus }>;
  /** the emergency reset: zero used, the previous value (or unreadable text) kept in the file */
  reset(date: string, reason?: string): Promise<{ previousSecondsUsed: number | null; status: BudgetStatus }>;
}

export interface BudgetDeps {
  storeFor: BudgetStoreFor;
  maxSeconds: number;
  now?: () => Date;
}

export function createDowntimeBudget(deps: BudgetDeps): DowntimeBudget {
  const now = deps.now ?? (() => new Date());

  const toStatus = (date: string, file: BudgetFile | undefined): BudgetStatus => {
    const used = file?.seconds_used ?? 0;
    const left = Math.max(0, ms(deps.maxSeconds - used));
    return {
      date,
      secondsUsed: used,
      maxSeconds: deps.maxSeconds,
      secondsLeft: left,
      exhausted: left <= 0,
      charges: file?.charges ?? [],
      recorded: file !== undefined,
    };
  };

  const readable = (date: string, location: string, current: ReadResult<BudgetFile>): BudgetFile | undefined => {
    if (current.status === "unreadable") throw new BudgetUnreadableError(location, current.error.reason, date);
    return current.status === "ok" ? current.value : undefined;
  };

  return {
    async status(date) {
      const store = deps.storeFor(date);
      return toStatus(date, readable(date, store.location, await store.read()));
    },

    async canAfford(date, seconds) {
      const status = await this.status(date);
      const ok = status.secondsLeft >= seconds;
      const reason = ok
        ? `${status.secondsLeft} s of downtime left for the night of ${nightLabel(date)} covers ${seconds} s`
        : `only ${status.secondsLeft} s of the ${status.maxSeconds} s downtime budget of the night of ${nightLabel(date)} is left`;
      return { ok, status, reason };
    },

    async charge(date, runId, seconds) {
      if (!Number.isFinite(seconds) || seconds < 0)
        throw new RangeError(`downtime must be a finite number of seconds >= 0, got ${seconds}`);
      const store = deps.storeFor(date);
      return store.update<{ charged: boolean; status: BudgetStatus }>((current) => {
        const file = readable(date, store.location, current) ?? { seconds_used: 0 };
        const charges = file.charges ?? [];
        if (charges.some((c) => c.run_id === runId)) return { answer: { charged: false, status: toStatus(date, file) } };
        const next: BudgetFile = {
          ...file,
          seconds_used: ms(file.seconds_used + seconds),
          charges: [...charges, { run_id: runId, seconds: ms(seconds), at: now().toISOString() }],
        };
        return { write: next, answer: { charged: true, status: toStatus(date, next) } };
      });
    },

    async reset(date, reason) {
      const store = deps.storeFor(date);
      return store.update((current) => {
        const previous = current.status === "ok" ? current.value : undefined;
        const entry = {
          at: now().toISOString(),
          previous_seconds_used: previous?.seconds_used ?? null,
          ...(previous?.charges?.length ? { previous_charges: previous.charges } : {}),
          ...(current.status === "unreadable"
            ? { previous_problem: current.error.reason, previous_text: (current.text ?? "").slice(0, 4096) }
            : {}),
          ...(reason ? { reason } : {}),
        };
        const next: BudgetFile = { seconds_used: 0, charges: [], resets: [...(previous?.resets ?? []), entry] };
        return { write: next, answer: { previousSecondsUsed: entry.previous_seconds_used, status: toStatus(date, next) } };
      });
    },
  };
}
