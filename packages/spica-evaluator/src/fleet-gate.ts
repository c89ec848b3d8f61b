/**
 * The fleet's maintenance slots as a run sees them (KLR_STATE_URL): the command line builds one on
 * `@gpu-canary/fleet-store`, so this package never loads `pg`. A slot is freed by its run's end
 * or its host's `recover` only — never by time; a run that loses its database keeps it.
 */
export interface FleetGate {
  /**
   * One of the fleet's slots for the run, after the local gates and under the GPU lock: taken (and
   * renewed until it ends), or refused with the reason — the holders, or the database away.
   * `onLost`: the slot was released by force while held; the run restores production and stops.
   */
  take(runId: string, options: { signal?: AbortSignal; onLost: (error: Error) => void }): Promise<FleetSlotHold | { refusal: string }>;
  /** `recover`: free this host's slots (a crashed run's, or one whose release found the database away); what was freed */
  releaseOwn(reason: string): Promise<{ runIds: string[] }>;
}

export interface FleetSlotHold {
  readonly token: number;
  /** before each destructive step: throws when the slot is gone (FLEET_SLOT_LOST) or the database cannot say (FLEET_DB_UNREACHABLE) */
  assertHeld(): Promise<void>;
  /** the run's end: renewal stops and the slot is freed; with `keep` (the run awaits recovery) it stays held */
  end(options: { keep: boolean }): Promise<void>;
}
