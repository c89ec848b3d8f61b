import {
  type BudgetFile,
  type BudgetStoreFor,
  type JsonStore,
  type RateLimitsFile,
  budgetFileSchema,
  rateLimitsFileSchema,
} from "@gpu-canary/policy";
import type pg from "pg";
import { createPgJsonStore } from "./pg-json-store.ts";

/** The key of a night's budget document: `budget/<YYYYMMDD>`. */
export const budgetKey = (date: string): string => `budget/${date}`;
export const RATE_LIMITS_KEY = "rate-limits";

/** A host's nightly downtime budgets in the fleet database (each host has its own production, so its own budget). */
export function pgBudgetStore(pool: pg.Pool, hostId: string): BudgetStoreFor {
  return (date) =>
    createPgJsonStore<BudgetFile>(pool, {
      hostId,
      key: budgetKey(date),
      schema: budgetFileSchema,
      hint: `gpu-canary budget reset --yes --date ${date}`,
    });
}

/** A host's rate-limit record in the fleet database. */
export function pgRateLimitStore(pool: pg.Pool, hostId: string): JsonStore<RateLimitsFile> {
  return createPgJsonStore<RateLimitsFile>(pool, {
    hostId,
    key: RATE_LIMITS_KEY,
    schema: rateLimitsFileSchema,
    hint: "fix the document by hand, or delete its row to start counting anew (that allows runs sooner than the limits would)",
  });
}

/**
 * The primary store (the fleet database) with a local copy: after each update, the document
 * as the primary holds it then is written to the local file too, so the checklist's
 * `cat`/`jq` commands read the truth on every host. The copy is read from the primary while
 * the file's own lock is held, so concurrent updates of one host cannot leave an older copy
 * last. Reads come from the primary. A failed local write throws after the primary committed
 * (the change is kept; the callers' updates are idempotent per run).
 */
export function mirroredStore<T>(primary: JsonStore<T>, mirror: JsonStore<T>): JsonStore<T> {
  return {
    location: primary.location,
    read: () => primary.read(),
    async update(decide) {
      const answer = await primary.update(decide);
      await mirror.update(async () => {
        const latest = await primary.read();
        return latest.status === "ok" ? { write: latest.value, answer: undefined } : { answer: undefined };
      });
      return answer;
    },
  };
}

/** A mirrored budget: the fleet database first, then the local `gpu_budget_<date>.json`. */
export function mirroredBudgetStore(primary: BudgetStoreFor, local: BudgetStoreFor): BudgetStoreFor {
  return (date) => mirroredStore(primary(date), local(date));
}
