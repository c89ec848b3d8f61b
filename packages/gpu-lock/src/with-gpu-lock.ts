import { InterruptedError } from "@gpu-canary/errors";
import type { AcquireGpuLockOptions, GpuLock, GpuLockHandle } from "./gpu-lock.ts";

/** Subscribes to SIGINT/SIGTERM; returns the unsubscribe. Injected so tests need no real signals. */
export type SignalSource = (handler: (signal: NodeJS.Signals) => void) => () => void;

export const processSignals: SignalSource = (handler) => {
  const listener = (signal: NodeJS.Signals) => handler(signal);
  process.on("SIGINT", listener);
  process.on("SIGTERM", listener);
  return () => {
    process.off("SIGINT", listener);
    process.off("SIGTERM", listener);
  };
};

/**
 * Run `work` holding the GPU lock, renewing it while it runs. The lock is released when `work`
 * returns, throws, or — after SIGINT/SIGTERM aborts its signal and it winds down — on a signal,
 * which then surfaces as an InterruptedError (exit 128 + the signal's number). A lost lock also
 * aborts the signal, with LOCK_LOST as the reason.
 */
export async function withGpuLock<T>(
  lock: GpuLock,
  options: AcquireGpuLockOptions & { signals?: SignalSource },
  work: (handle: GpuLockHandle, signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const handle = await lock.acquire(options);
  const controller = new AbortController();
  let interrupted: NodeJS.Signals | null = null;
  const stopRenewal = handle.startRenewal((error) => controller.abort(error));
  const unsubscribe = (options.signals ?? processSignals)((signal) => {
    interrupted ??= signal;
    controller.abort(new InterruptedError(signal, "the locked work"));
  });
  try {
    const result = await work(handle, controller.signal);
    if (interrupted) throw new InterruptedError(interrupted, "the locked work");
    return result;
  } catch (error) {
    if (interrupted) throw new InterruptedError(interrupted, "the locked work");
    throw error;
  } finally {
    stopRenewal();
    unsubscribe();
    await handle.release();
  }
}
