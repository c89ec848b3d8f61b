import type { AuditFeed } from "@gpu-canary/audit-feed";
import type { Config } from "@gpu-canary/config";
import { GpuCanaryError, messageOf } from "@gpu-canary/errors";
import { type RunContext, listPromotions, readPromotion, statusDocument } from "@gpu-canary/spica-evaluator";
import { type IntentStore, parseIntentInput } from "@gpu-canary/tuning";
import Fastify, { type FastifyReply, type FastifyRequest } from "fastify";
import type { Logger } from "pino";
import * as z from "zod";
import type { Metrics } from "./metrics.ts";
import { PAGE_CSS, PAGE_SCRIPT } from "./page/assets.ts";
import { pageData } from "./page/data.ts";
import { renderPage } from "./page/render.ts";
import type { SettingsQueue } from "./settings-changes.ts";
import { bearerMatches } from "./token.ts";

export interface ServerDeps {
  logger: Logger;
  now: () => Date;
  version: string;
  /** everything below is absent in the bare server (tests of /healthz) */
  config?: Config;
  context?: RunContext;
  audit?: AuditFeed;
  store?: IntentStore;
  metrics?: Metrics;
  token?: string;
  promotionsDir?: string;
  /** the daemon's own state for /status */
  daemonState?: () => Record<string, unknown>;
  /** a new intent arrived: wake the worker */
  onIntent?: () => void;
  /** KLR_STATE_URL: the fleet as `gpu-canary fleet status --json` shows it (GET /fleet); absent, this host belongs to no fleet */
  fleet?: () => Promise<unknown>;
  /** settings changes asked for (POST /promotions/<run_id>/apply, POST /rollback), worked one at a time by the daemon */
  changes?: SettingsQueue;
}

const runIdSchema = z.string().regex(/^[A-Za-z0-9_.-]{1,200}$/, "a run id: letters, digits, '_', '.', '-'");

const auditQuerySchema = z.strictObject({
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  event: z.string().min(1).max(100).optional(),
  run: z.string().min(1).max(200).optional(),
  limit: z.coerce.number().int().positive().max(10_000).optional(),
});

function badRequest(message: string) {
  return { error: { code: "BAD_REQUEST", message, hint: 'see docs/architecture.md, "Daemon (contract)", in gpu-canary\'s repository' } };
}

/** The request's own faults, each with a code a script can test and the fix. */
const BAD_REQUEST = ["BAD_REQUEST", "send one JSON object; see the README's example"] as const;
const HTTP_ERRORS: Partial<Record<number, readonly [code: string, hint: string]>> = {
  400: BAD_REQUEST,
  413: ["BODY_TOO_LARGE", "an intent is a small JSON object: the body may be at most 64 KiB"],
  415: ["UNSUPPORTED_MEDIA_TYPE", "send the body as JSON with the header `content-type: application/json`"],
};

/**
 * The status page's policy: nothing but the daemon itself — its stylesheet, its script and its
 * /audit/stream — no inline script or style, no form, no frame.
 */
export const PAGE_CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/** What a client refused by the /audit/stream cap is told to wait (Retry-After). */
const STREAM_RETRY_AFTER_SECONDS = 10;

/** The daemon's HTTP API (docs/architecture.md, "Daemon (contract)"), without listening: tests use `inject`. */
export function buildServer(deps: ServerDeps) {
  const app = Fastify({ loggerInstance: deps.logger, bodyLimit: 64 * 1024 });
  const startedAt = deps.now();

  app.setErrorHandler((error, _request, reply) => {
    if (error instanceof GpuCanaryError) {
      const status = error.kind === "usage" ? 400 : error.kind === "refused" ? 409 : 503;
      return reply.code(status).send({ error: error.toJSON() });
    }
    const status = typeof (error as { statusCode?: unknown }).statusCode === "number" ? (error as { statusCode: number }).statusCode : 500;
    if (status >= 500) deps.logger.error({ err: error }, "request failed");
    const [code, hint] = HTTP_ERRORS[status] ?? (status < 500 ? BAD_REQUEST : (["INTERNAL", "see gpu-canaryd's log"] as const));
    return reply.code(status).send({ error: { code, message: (error as Error).message, hint } });
  });

  app.get("/healthz", () => ({
    ok: true,
    version: deps.version,
    started_at: startedAt.toISOString(),
    uptime_seconds: Math.round((deps.now().getTime() - startedAt.getTime()) / 1000),
  }));

  const { context, audit, store, metrics, config } = deps;
  if (!context || !audit || !store || !metrics || !config) return app;

  app.get("/status", async () => ({ ...(await statusDocument(context)), daemon: deps.daemonState?.() ?? null }));

  // The status page: read-only, served like the other read routes (no token; loopback by default).
  const page = (reply: FastifyReply, type: string, body: string) =>
    reply.header("content-type", type).header("content-security-policy", PAGE_CSP).header("x-content-type-options", "nosniff").send(body);
  app.get("/", async (_request, reply) => {
    const data = await pageData({
      config,
      context,
      audit,
      promotionsDir: deps.promotionsDir ?? "",
      now: deps.now,
      version: deps.version,
      ...(deps.daemonState ? { daemonState: deps.daemonState } : {}),
    });
    return page(reply.header("cache-control", "no-store"), "text/html; charset=utf-8", renderPage(data));
  });
  app.get("/page.css", (_request, reply) => page(reply, "text/css; charset=utf-8", PAGE_CSS));
  app.get("/page.js", (_request, reply) => page(reply, "text/javascript; charset=utf-8", PAGE_SCRIPT));
  // A browser asks for it by itself: answered, so that its console shows no 404.
  app.get("/favicon.ico", (_request, reply) => reply.code(204).send());

  app.get("/audit", async (request, reply) => {
    const parsed = auditQuerySchema.safeParse(request.query);
    if (!parsed.success)
      return reply.code(400).send(badRequest(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")));
    const q = parsed.data;
    const events = await audit.query({
      ...(q.since ? { since: new Date(q.since) } : {}),
      ...(q.until ? { until: new Date(q.until) } : {}),
      ...(q.event ? { event: q.event } : {}),
      ...(q.run ? { runId: q.run } : {}),
    });
    return { events: events.slice(-(q.limit ?? 1000)) };
  });

  // Each client holds a file poll and a socket: past the cap a client is told to come back later.
  const streamCap = config.daemonStreamClients;
  const streams = new Set<AbortController>();
  // A stream never ends by itself: on close each one ends, or the daemon's stop would wait for its clients.
  app.addHook("preClose", (done) => {
    for (const stream of streams) stream.abort();
    done();
  });
  app.get("/audit/stream", async (_request, reply) => {
    if (streams.size >= streamCap) {
      return reply
        .code(503)
        .header("retry-after", String(STREAM_RETRY_AFTER_SECONDS))
        .send({
          error: {
            code: "STREAM_CLIENTS_FULL",
            message: `${streamCap} clients already follow /audit/stream, the most KLR_DAEMON_STREAM_CLIENTS allows`,
            hint: `try again in ${STREAM_RETRY_AFTER_SECONDS} s, close a client you left open, or raise KLR_DAEMON_STREAM_CLIENTS; GET /audit?since=… answers without a stream`,
          },
        });
    }
    const controller = new AbortController();
    streams.add(controller);
    // The slot is freed the moment the client goes, not when the follow loop next wakes.
    reply.raw.on("close", () => {
      streams.delete(controller);
      controller.abort();
    });
    reply.hijack();
    reply.raw.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    reply.raw.write(": gpu-canary audit stream\n\n");
    try {
      for await (const event of audit.follow({ signal: controller.signal, pollMs: 200 })) {
        reply.raw.write(`event: ${event.event}\ndata: ${JSON.stringify(event)}\n\n`);
      }
    } catch (error) {
      if (!controller.signal.aborted) deps.logger.warn({ err: messageOf(error) }, "audit stream ended");
    }
    streams.delete(controller);
    reply.raw.end();
  });

  app.get("/promotions", async () => {
    const listing = await listPromotions(deps.promotionsDir ?? "");
    return { promotions: listing.promotions, unreadable: listing.unreadable };
  });

  app.get("/fleet", async (_request, reply) => {
    if (!deps.fleet)
      return reply.code(404).send({
        error: {
          code: "FLEET_NOT_CONFIGURED",
          message: "this host belongs to no fleet: KLR_STATE_URL is not set",
          hint: "set KLR_STATE_URL=postgres://USER:PASSWORD@HOST:5432/DATABASE on every host of the fleet, run `gpu-canary fleet init` once, and restart gpu-canaryd",
        },
      });
    try {
      return await deps.fleet();
    } catch (error) {
      // The database away is the database's fault, not a refusal of this request: 503, naming it (never its password).
      if (error instanceof GpuCanaryError && error.code === "FLEET_DB_UNREACHABLE")
        return reply.code(503).send({ error: { ...error.toJSON(), database: error.details.database } });
      throw error;
    }
  });

  app.get("/metrics", async (_request, reply) => {
    const text = await metrics.registry.metrics();
    return reply.header("content-type", metrics.registry.contentType).send(text);
  });

  /** The token check of every mutating route: false once it has answered 401. */
  const authorized = (request: FastifyRequest, reply: FastifyReply): boolean => {
    if (deps.token && bearerMatches(request.headers.authorization, deps.token)) return true;
    void reply
      .code(401)
      .header("www-authenticate", 'Bearer realm="gpu-canaryd"')
      .send({
        error: {
          code: "UNAUTHORIZED",
          message: "a valid bearer token is required",
          hint: "send Authorization: Bearer <the token in KLR_DAEMON_TOKEN_FILE>",
        },
      });
    return false;
  };

  const { changes } = deps;
  if (changes) {
    app.post<{ Params: { run_id: string } }>("/promotions/:run_id/apply", async (request, reply) => {
      if (!authorized(request, reply)) return reply;
      const runId = runIdSchema.safeParse(request.params.run_id);
      if (!runId.success) return reply.code(400).send(badRequest(`run_id: ${runId.error.issues[0]?.message ?? "malformed"}`));
      // Named now, not when the daemon gets to it: a typo is the caller's answer, not a notification later.
      await readPromotion(deps.promotionsDir ?? "", runId.data);
      changes.add({ kind: "apply", promotion: runId.data, by: "api" });
      deps.onIntent?.();
      return reply.code(202).send({ queued: changes.queued() });
    });
    app.post("/rollback", async (request, reply) => {
      if (!authorized(request, reply)) return reply;
      changes.add({ kind: "rollback", by: "api" });
      deps.onIntent?.();
      return reply.code(202).send({ queued: changes.queued() });
    });
  }

  app.post("/intents", async (request, reply) => {
    if (!authorized(request, reply)) return reply;
    let input;
    try {
      input = parseIntentInput(request.body, config.subsystems);
    } catch (error) {
      if (error instanceof GpuCanaryError) return reply.code(400).send({ error: error.toJSON() });
      throw error;
    }
    const created = await store.create(input);
    if (!created.merged)
      await audit.append({ event: "intent_created", intent_id: created.intent.id, kind: created.intent.kind, source: "api" });
    deps.onIntent?.();
    return reply.code(202).send({ id: created.intent.id, merged: created.merged, intent: created.intent });
  });

  return app;
}
