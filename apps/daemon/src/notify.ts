import { setTimeout as sleep } from "node:timers/promises";
import { messageOf } from "@gpu-canary/errors";
import type { Logger } from "pino";

export type NotificationKind = "run_finished" | "refused" | "fault" | "promotion" | "applied" | "rolled_back";

/**
 * KLR_NOTIFY_URL: a JSON POST per notable event, retried with backoff (1 s, 2 s, 4 s), never
 * awaited by a run. Without a URL it does nothing.
 */
export function createNotifier(deps: { url: string | undefined; logger: Logger; host: string; attempts?: number; baseDelayMs?: number }) {
  const attempts = deps.attempts ?? 4;
  const base = deps.baseDelayMs ?? 1000;
  const inFlight = new Set<Promise<void>>();
  const deliver = async (body: Record<string, unknown>) => {
    if (!deps.url) return;
    for (let attempt = 1; attempt <= attempts; attempt += 1) {
      try {
        const response = await fetch(deps.url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        });
        await response.body?.cancel();
        if (response.ok) return;
        deps.logger.warn({ status: response.status, attempt }, "notification refused by KLR_NOTIFY_URL");
      } catch (error) {
        deps.logger.warn({ err: messageOf(error), attempt }, "notification failed");
      }
      if (attempt < attempts) await sleep(base * 2 ** (attempt - 1));
    }
    deps.logger.error({ kind: body.kind }, "notification dropped after retries");
  };
  return {
    send(kind: NotificationKind, fields: Record<string, unknown>): void {
      if (!deps.url) return;
      const promise = deliver({ kind, host: deps.host, at: new Date().toISOString(), ...fields }).finally(() => inFlight.delete(promise));
      inFlight.add(promise);
    },
    /** at shutdown: give deliveries in flight a moment */
    async flush(timeoutMs = 2000): Promise<void> {
      await Promise.race([Promise.allSettled([...inFlight]), sleep(timeoutMs, undefined, { ref: false })]);
    },
  };
}

export type Notifier = ReturnType<typeof createNotifier>;
