import { messageOf } from "@gpu-canary/errors";
import type { Logger } from "pino";

/**
 * For work a loop repeats every few seconds: one warning when it starts failing and one line when it
 * works again, so a fault that lasts all night is one warning in the log, not one per poll.
 */
export function warnOnceWhileFailing(logger: Logger, says: { failing: string; again: string }) {
  let failing = false;
  return {
    /** The work succeeded: said when it had been failing. */
    worked(fields: Record<string, unknown> = {}): void {
      if (failing) logger.info(fields, says.again);
      failing = false;
    },
    /** The work failed: warned the first time in a row. True when this was that first time. */
    failed(error: unknown): boolean {
      const first = !failing;
      if (first) logger.warn({ err: messageOf(error) }, says.failing);
      failing = true;
      return first;
    },
  };
}
