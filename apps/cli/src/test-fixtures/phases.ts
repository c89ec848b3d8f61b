/** A passing quiesced run's progress off a terminal, phase by phase, as the lock's journal names them. */
export const QUIESCED_RUN_PHASES = [
  "started",
  "admitted",
  "baseline",
  "watchdog_armed",
  "quiescing",
  "canary_starting",
  "testing",
  "canary_stopping",
  "restoring",
  "disarming",
  "finished",
] as const;
