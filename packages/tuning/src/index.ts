export {
  ACCOUNT_MAX_AGE_MS,
  DIRECTION,
  classifyLine,
  cleanLine,
  createOomDetector,
  memoryAccountOf,
  recordMessage,
} from "./oom-classifier.ts";
export type { OomEvent, OomKind } from "./oom-classifier.ts";
export { INTENT_KINDS, IntentError, createIntentStore, intentInputSchema, intentSchema, parseIntentInput } from "./intents.ts";
export type { ClaimedIntent, Intent, IntentInput, IntentKind, IntentState, IntentStore, IntentStoreDeps } from "./intents.ts";
export { listIntentDocs } from "./intent-docs.ts";
export type { IntentDoc, IntentDocsOptions } from "./intent-docs.ts";
export { createTuningRunner, proposeCandidates, rank } from "./tuning-runner.ts";
export type { CurrentConfig, RolledBack, Screened, TuningOutcome, TuningRunner, TuningRunnerDeps, TuningStatus } from "./tuning-runner.ts";
export { createObserver, lastAppliedAt, workIntent } from "./worker.ts";
export type { ObservedEvent } from "./worker.ts";
export { followLog } from "./log-follower.ts";
export type { FollowOptions } from "./log-follower.ts";
