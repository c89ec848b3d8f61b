import { FleetSlotLostError, FleetSlotsFullError } from "./errors.ts";
import type { FleetSlots } from "./fleet-slots.ts";

/** One run's hold on a slot, as spica-evaluator's FleetSlotHold sees it. */
export interface RunSlotHold {
  readonly token: number;
  assertHeld(): Promise<void>;
  end(options: { keep: boolean }): Promise<void>;
}

/** The slots as a run takes them (spica-evaluator's FleetGate, structurally: this package does not depend on it). */
export interface RunGate {
  take(runId: string, options: { signal?: AbortSignal; onLost: (error: Error) => void }): Promise<RunSlotHold | { refusal: string }>;
  releaseOwn(reason: string): Promise<{ runIds: string[] }>;
}

export interface RunGateOptions {
  /** `--wait SECONDS`: how long a run waits for a slot (default 0: refused at once) */
  waitSeconds?: number;
  /** the holder's heartbeat (default 5 s; a slot is shown stale after 60 s without one) */
  renewEveryMs?: number;
  /** a renewal that failed (the database away): the slot stays held all the same */
  onRenewError?: (error: unknown) => void;
}

/**
 * A run's fleet gate on `slots`: a slot taken (waiting up to `waitSeconds`), renewed until the run
 * ends, released then unless the run awaits recovery; a refusal names the holders. `releaseOwn`
 * is this host's recovery.
 */
export function createRunGate(slots: FleetSlots, options: RunGateOptions = {}): RunGate {
  return {
    async take(runId, { signal, onLost }) {
      const taken = await slots.acquireWaiting(runId, { waitSeconds: options.waitSeconds ?? 0, ...(signal ? { signal } : {}) });
      if (!taken.ok) {
        const full = new FleetSlotsFullError(taken.maxConcurrent, taken.holders);
        return { refusal: `${full.message}; ${full.hint ?? ""}` };
      }
      const { token } = taken;
      const heartbeat = slots.keepRenewing(token, {
        everyMs: options.renewEveryMs ?? 5_000,
        onLost: () => onLost(new FleetSlotLostError(slots.hostId, token)),
        ...(options.onRenewError ? { onError: options.onRenewError } : {}),
      });
      return {
        token,
        assertHeld: () => slots.assertHeld(token),
        async end({ keep }) {
          await heartbeat.stop();
          if (!keep) await slots.release({ token });
        },
      };
    },
    async releaseOwn(reason) {
      const freed = await slots.releaseHost(slots.hostId, { by: slots.hostId, reason });
      return { runIds: freed.released.map((h) => h.runId) };
    },
  };
}
