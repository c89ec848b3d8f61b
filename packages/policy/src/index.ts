export { addDays, civilDateOf, formatCivilDate, localTime, nightLabel, parseCivilDate, resolveLocal } from "./local-time.ts";
export type { CivilDate } from "./local-time.ts";
export { crossesMidnight, lastOpened, nightOf, occurrenceOn, windowAt } from "./maintenance-window.ts";
export type { WindowOccurrence, WindowState } from "./maintenance-window.ts";
export { BudgetUnreadableError, budgetFileSchema, createDowntimeBudget, fileBudgetStore } from "./downtime-budget.ts";
export type { BudgetDeps, BudgetFile, BudgetStatus, BudgetStoreFor, DowntimeBudget } from "./downtime-budget.ts";
export {
  RateLimitsUnreadableError,
  createRateLimiter,
  decide as decideRateLimit,
  fileRateLimitStore,
  rateLimitsFileSchema,
} from "./rate-limits.ts";
export type { RateDecision, RateLimitRule, RateLimiter, RateLimiterDeps, RateLimitsFile } from "./rate-limits.ts";
export { createJsonFileStore } from "./json-store.ts";
export type { JsonStore } from "./json-store.ts";
