export { buildServer } from "./server.ts";
export type { ServerDeps } from "./server.ts";
export { createRolloutStep, rolloutFleetFor, rolloutResultOf } from "./rollout-step.ts";
export type { RolloutFleet, RolloutStep } from "./rollout-step.ts";
