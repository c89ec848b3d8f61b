export { createFleetPool, describeDatabase, inTransaction, isUnreachable, translateError } from "./connection.ts";
export type { FleetPoolOptions } from "./connection.ts";
export {
  FleetDbLoginError,
  FleetDbUnreachableError,
  FleetReleaseRefusedError,
  FleetSchemaMissingError,
  FleetSchemaNewerError,
  FleetSlotLostError,
  FleetSlotsFullError,
} from "./errors.ts";
export type { SlotHolder } from "./errors.ts";
export { createFleetSlots } from "./fleet-slots.ts";
export type { AcquireResult, FleetSlots, FleetSlotsDeps, SlotStatus } from "./fleet-slots.ts";
export { MIGRATIONS_DIR, checkSchema, loadMigrations, migrate } from "./migrate.ts";
export type { MigrateResult, Migration } from "./migrate.ts";
export { queryAudit, syncAudit } from "./audit-sync.ts";
export type { FleetAuditEvent, FleetAuditFilter, SyncAuditOptions } from "./audit-sync.ts";
export { createPgJsonStore } from "./pg-json-store.ts";
export type { PgJsonStoreOptions } from "./pg-json-store.ts";
export { RATE_LIMITS_KEY, budgetKey, mirroredBudgetStore, mirroredStore, pgBudgetStore, pgRateLimitStore } from "./stores.ts";
export { listHosts, touchHost } from "./hosts.ts";
export type { FleetHost } from "./hosts.ts";
export { createRunGate } from "./run-gate.ts";
export type { RunGate, RunGateOptions, RunSlotHold } from "./run-gate.ts";
export { listFleetPromotions, syncPromotions } from "./promotions.ts";
export type { FleetPromotion, FleetPromotionFilter, PromotionDoc, SyncPromotionsOptions, SyncPromotionsResult } from "./promotions.ts";
export { listFleetIntents, syncIntents } from "./intents.ts";
export type { FleetIntent, FleetIntentFilter, IntentDoc, SyncIntentsOptions, SyncIntentsResult } from "./intents.ts";
export { hostAppliedOf, lastRunOf, publishHost } from "./host-summary.ts";
export type { HostApplied, HostLastRun, PublishHostOptions, PublishHostResult } from "./host-summary.ts";
export { fleetOverview } from "./fleet-overview.ts";
export type { FleetOverview, FleetOverviewOptions } from "./fleet-overview.ts";
export {
  MAX_SOAK_SECONDS,
  ROLLOUT_HOST_STATES,
  ROLLOUT_STATES,
  RolloutNotFoundError,
  RolloutRunningError,
  appliedRolloutsOf,
  assignmentFor,
  fleetPromotion,
  reportResult,
  resumeRollout,
  rolloutStatus,
  startRollout,
} from "./rollouts.ts";
export type {
  Rollout,
  RolloutAssignment,
  RolloutHost,
  RolloutHostState,
  RolloutResult,
  RolloutState,
  StartRolloutOptions,
} from "./rollouts.ts";
