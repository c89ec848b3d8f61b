import { fixedNow } from "@gpu-canary/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { buildServer } from "./server.ts";

describe("buildServer", () => {
  it("answers /healthz with its version and start time", async () => {
    const app = buildServer({ logger: pino({ level: "silent" }), now: fixedNow("2026-11-28T08:00:00Z"), version: "0.1.0" });
    const response = await app.inject({ method: "GET", url: "/healthz" });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ ok: true, version: "0.1.0", started_at: "2026-11-28T08:00:00.000Z", uptime_seconds: 0 });
    await app.close();
  });

  it("answers 404 for a route it does not have", async () => {
    const app = buildServer({ logger: pino({ level: "silent" }), now: fixedNow("2026-11-28T08:00:00Z"), version: "0.1.0" });
    expect((await app.inject({ method: "GET", url: "/nope" })).statusCode).toBe(404);
    await app.close();
  });
});
