import Fastify from "fastify";
import type { Logger } from "pino";

export interface ServerDeps {
  logger: Logger;
  now: () => Date;
  version: string;
}

/**
 * The daemon's HTTP API, without listening (tests use `inject`). Today it answers /healthz;
 * the status, audit, metrics and intent routes arrive with the tuning loop.
 */
export function buildServer(deps: ServerDeps) {
  const app = Fastify({ loggerInstance: deps.logger });
  const startedAt = deps.now();
  app.get("/healthz", () => ({
    ok: true,
    version: deps.version,
    started_at: startedAt.toISOString(),
    uptime_seconds: (deps.now().getTime() - startedAt.getTime()) / 1000,
  }));
  return app;
}
