import { mkdir, writeFile } from "node:fs/promises";
import { type IncomingHttpHeaders, get as httpGet } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { FleetDbUnreachableError } from "@gpu-canary/fleet-store";
import { fixedNow, testdir, until } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { buildServer } from "./server.ts";
import { fullServer, silent } from "./test-fixtures/full-server.ts";
import { bearerMatches, ensureToken } from "./token.ts";

const full = fullServer;

/** A maintenance window in UTC from `fromHours` to `toHours` after now, as KLR_GPU_MAINTENANCE_WINDOW. */
function utcWindowFromNow(fromHours: number, toHours: number): string {
  const two = (n: number) => String(n).padStart(2, "0");
  const at = (hours: number) => {
    const t = new Date(Date.now() + hours * 3_600_000);
    return `${two(t.getUTCHours())}:${two(t.getUTCMinutes())}`;
  };
  return `${at(fromHours)}-${at(toHours)}`;
}

const intent = { kind: "oom_kv_cache", subsystem: "gpu_allocation", evidence: "ValueError: No available memory for the cache blocks." };

describe("buildServer", () => {
  it("answers /healthz with its version and start time", async () => {
    const app = buildServer({ logger: silent, now: fixedNow("2026-11-28T08:00:00Z"), version: "0.1.0" });
    const response = await app.inject({ method: "GET", url: "/healthz" });
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ ok: true, version: "0.1.0", started_at: "2026-11-28T08:00:00.000Z", uptime_seconds: 0 });
    expect((await app.inject({ method: "GET", url: "/nope" })).statusCode).toBe(404);
    await app.close();
  });

  it("GET /fleet: 404 naming KLR_STATE_URL without a fleet; the fleet's document with one; 503 naming the database, never its password, when it is away", async () => {
    const alone = await full();
    const none = await alone.app.inject({ method: "GET", url: "/fleet" });
    expect(none.statusCode).toBe(404);
    expect(none.json()).toMatchObject({
      error: { code: "FLEET_NOT_CONFIGURED", message: expect.stringContaining("KLR_STATE_URL is not set") },
    });

    const doc = { host_id: "gpu-a", hosts: [{ host_id: "gpu-a", pending_promotions: ["r-1"] }], pending_promotions: [] };
    let away = false;
    const s = await full(
      {},
      {
        fleet: () =>
          away ? Promise.reject(new FleetDbUnreachableError("db.example:5432/fleet", "connect ECONNREFUSED")) : Promise.resolve(doc),
      },
    );
    // read-only like the other GET routes: no token asked
    const ok = await s.app.inject({ method: "GET", url: "/fleet" });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual(doc);
    away = true;
    const down = await s.app.inject({ method: "GET", url: "/fleet" });
    expect(down.statusCode).toBe(503);
    expect(down.json()).toMatchObject({
      error: { code: "FLEET_DB_UNREACHABLE", message: expect.stringContaining("db.example:5432/fleet"), database: "db.example:5432/fleet" },
    });
  });

  it("POST /promotions/<run_id>/apply and POST /rollback: token-guarded, the run id checked, one change queued at a time (202, then 409)", async () => {
    const s = await full();
    const auth = { authorization: `Bearer ${s.token}` };
    expect((await s.app.inject({ method: "POST", url: "/promotions/r-1/apply" })).statusCode).toBe(401);
    expect((await s.app.inject({ method: "POST", url: "/rollback", headers: { authorization: "Bearer wrong" } })).statusCode).toBe(401);
    const bad = await s.app.inject({ method: "POST", url: "/promotions/r%20x;rm/apply", headers: auth });
    expect(bad.statusCode).toBe(400);
    const unknown = await s.app.inject({ method: "POST", url: "/promotions/r-1/apply", headers: auth });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json()).toMatchObject({ error: { code: "PROMOTION_NOT_FOUND" } });
    expect(s.changes.queued()).toBeNull();
    await mkdir(s.layout.promotionsDir, { recursive: true });
    await writeFile(
      join(s.layout.promotionsDir, "r-1.json"),
      JSON.stringify({
        run_id: "r-1",
        created_at: "2026-12-07T03:00:00Z",
        subsystem: "gpu_allocation",
        candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" },
        path: "quiesced",
        whisper_verified: false,
        llm_latency_ms: 10,
      }),
    );
    const queued = await s.app.inject({ method: "POST", url: "/promotions/r-1/apply", headers: auth });
    expect(queued.statusCode).toBe(202);
    expect(queued.json()).toEqual({ queued: { kind: "apply", promotion: "r-1", by: "api" } });
    expect(s.woken()).toBe(1);
    const second = await s.app.inject({ method: "POST", url: "/rollback", headers: auth });
    expect(second.statusCode).toBe(409);
    expect(second.json()).toMatchObject({ error: { code: "CHANGE_QUEUED", message: "an apply of r-1 is queued already" } });
    expect(s.changes.take()).toMatchObject({ kind: "apply" });
    expect((await s.app.inject({ method: "POST", url: "/rollback", headers: auth })).statusCode).toBe(202);
  });

  it("POST /intents: 401 without or with a wrong token, 400 for a bad body, 202 accepted (merged when repeated)", async () => {
    const s = await full();
    const post = (payload: unknown, authorization?: string) =>
      s.app.inject({ method: "POST", url: "/intents", payload: payload as object, headers: authorization ? { authorization } : {} });
    expect((await post(intent)).statusCode).toBe(401);
    expect((await post(intent, "Bearer wrong-token-of-some-length")).statusCode).toBe(401);
    expect((await post(intent, `Basic ${s.token}`)).statusCode).toBe(401);
    const auth = `Bearer ${s.token}`;
    for (const bad of [
      { ...intent, kind: "oom_disk" },
      { ...intent, subsystem: "tts" },
      { ...intent, extra: true },
      // A candidate's own keys are strict too: max_model_len is not one of them.
      { ...intent, candidate: { vllm_memory_util: 0.8, whisper_model_size: "small", max_model_len: 4096 } },
      { kind: "manual" },
      [intent],
    ]) {
      const response = await post(bad, auth);
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ error: { code: "INTENT_INVALID" } });
    }
    const notJson = await s.app.inject({
      method: "POST",
      url: "/intents",
      payload: "{",
      headers: { authorization: auth, "content-type": "application/json" },
    });
    expect(notJson.statusCode).toBe(400);
    // curl -d sends form encoding unless told: a code and the header to add, not "INTERNAL".
    const form = await s.app.inject({
      method: "POST",
      url: "/intents",
      payload: JSON.stringify(intent),
      headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" },
    });
    expect(form.statusCode).toBe(415);
    expect(form.json()).toMatchObject({
      error: { code: "UNSUPPORTED_MEDIA_TYPE", hint: expect.stringContaining("content-type: application/json") },
    });
    const huge = await post({ ...intent, evidence: "x".repeat(70 * 1024) }, auth);
    expect(huge.statusCode).toBe(413);
    expect(huge.json()).toMatchObject({ error: { code: "BODY_TOO_LARGE", hint: expect.stringContaining("64 KiB") } });
    const accepted = await post(intent, auth);
    expect(accepted.statusCode).toBe(202);
    expect(accepted.json()).toMatchObject({ merged: false, intent: { ...intent } });
    expect((await post(intent, auth)).json()).toMatchObject({ merged: true, id: accepted.json<{ id: string }>().id });
    expect(s.woken()).toBe(2);
    expect((await s.audit.query()).map((e) => e.event)).toEqual(["intent_created"]);
    await s.app.close();
  });

  it("GET /audit filters like `audit query` and refuses bad parameters; /promotions and /metrics answer", async () => {
    // The window (UTC) opens two hours from now: closed whatever the time of day the test runs.
    const s = await full({ KLR_GPU_MAINTENANCE_WINDOW: utcWindowFromNow(2, 3), KLR_GPU_MAINTENANCE_TZ: "UTC" });
    await s.audit.append({ event: "gate_refused", run_id: "r-1", gate: "window", reason: "closed" });
    await s.audit.append({ event: "run_finished", run_id: "r-1", status: "refused", mode: "canary" });
    const all = await s.app.inject({ method: "GET", url: "/audit" });
    expect(all.json<{ events: unknown[] }>().events).toHaveLength(2);
    const one = await s.app.inject({ method: "GET", url: "/audit?event=gate_refused&run=r-1" });
    expect(one.json<{ events: { gate: string }[] }>().events.map((e) => e.gate)).toEqual(["window"]);
    expect((await s.app.inject({ method: "GET", url: "/audit?since=yesterday" })).statusCode).toBe(400);
    expect((await s.app.inject({ method: "GET", url: "/audit?color=blue" })).statusCode).toBe(400);
    await mkdir(s.layout.promotionsDir, { recursive: true });
    await writeFile(join(s.layout.promotionsDir, "junk.json"), "{");
    expect((await s.app.inject({ method: "GET", url: "/promotions" })).json()).toMatchObject({
      promotions: [],
      unreadable: [{ file: expect.stringContaining("junk.json") }],
    });
    const metrics = await s.app.inject({ method: "GET", url: "/metrics" });
    expect(metrics.headers["content-type"]).toContain("text/plain");
    for (const name of [
      "gpu_canary_runs_total",
      "gpu_canary_refusals_total",
      "gpu_canary_downtime_used_seconds 0",
      "gpu_canary_downtime_left_seconds 60",
      "gpu_canary_window_open 0",
      "gpu_canary_lock_held 0",
      "gpu_canary_intents_pending 0",
      "gpu_canary_observer_errors_total 0",
    ])
      expect(metrics.body).toContain(name);
    await s.app.close();
    const open = await full({ KLR_GPU_MAINTENANCE_WINDOW: utcWindowFromNow(-1, 1), KLR_GPU_MAINTENANCE_TZ: "UTC" });
    expect((await open.app.inject({ method: "GET", url: "/metrics" })).body).toContain("gpu_canary_window_open 1");
    await open.app.close();
  });

  it("GET /status answers with each unavailable part named", async () => {
    const s = await full();
    const status = (await s.app.inject({ method: "GET", url: "/status" })).json<Record<string, Record<string, unknown>>>();
    expect(Object.keys(status)).toEqual(["window", "budget", "lock", "rate_limits", "mode", "gpus", "production", "daemon"]);
    expect(status.gpus?.error).toBeDefined();
    expect(status.production).toMatchObject({ health: "refused" });
    await s.app.close();
  });

  it("streams audit events as server-sent events to a real client", async () => {
    const s = await full();
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    const address = s.app.server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const controller = new AbortController();
    const response = await fetch(`http://127.0.0.1:${port}/audit/stream`, { signal: controller.signal });
    expect(response.headers.get("content-type")).toBe("text/event-stream");
    const reader = response.body!.getReader();
    let text = "";
    setTimeout(() => void s.audit.append({ event: "recovery", run_id: "r-2", action: "released_stale" }), 300);
    while (!text.includes("event: recovery")) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).toMatch(/event: recovery\ndata: \{.*"run_id":"r-2"/);
    controller.abort();
    await s.app.close();
  }, 20_000);
});

/** A real HTTP client of /audit/stream on its own socket: its status, headers and body so far, and a way to hang up. */
function streamClient(port: number) {
  return new Promise<{ status: number; headers: IncomingHttpHeaders; body: () => string; close: () => void }>((resolve, reject) => {
    const request = httpGet({ host: "127.0.0.1", port, path: "/audit/stream", agent: false }, (response) => {
      let body = "";
      response.on("data", (chunk: Buffer) => (body += chunk.toString()));
      response.on("error", () => undefined);
      // The stream's first bytes (or the whole refusal) say the daemon answered.
      const answered = () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body: () => body, close: () => request.destroy() });
      if (response.statusCode === 200) response.once("data", answered);
      else response.on("end", answered);
    });
    request.on("error", reject);
  });
}

describe("GET /audit/stream", () => {
  it("answers 503 STREAM_CLIENTS_FULL with Retry-After past KLR_DAEMON_STREAM_CLIENTS, and a client that hangs up frees its slot", async () => {
    const s = await full({ KLR_DAEMON_STREAM_CLIENTS: "3" });
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    onTestFinished(() => s.app.close());
    const { port } = s.app.server.address() as AddressInfo;
    const clients = [await streamClient(port), await streamClient(port), await streamClient(port)];
    onTestFinished(() => clients.forEach((c) => c.close()));
    expect(clients.map((c) => c.status)).toEqual([200, 200, 200]);

    const refused = await streamClient(port);
    expect(refused.status).toBe(503);
    expect(refused.headers["retry-after"]).toBe("10");
    expect(refused.headers["content-type"]).toContain("application/json");
    expect(JSON.parse(refused.body())).toEqual({
      error: {
        code: "STREAM_CLIENTS_FULL",
        message: expect.stringContaining("3 clients already follow /audit/stream"),
        hint: expect.stringContaining("KLR_DAEMON_STREAM_CLIENTS"),
      },
    });

    clients.shift()?.close();
    // The server learns of the hang-up a moment later: only then is the slot free.
    const next = await until(
      async () => {
        const c = await streamClient(port);
        if (c.status === 200) return c;
        return false;
      },
      "a slot to be freed by the client that hung up",
      { timeoutMs: 5000, pollMs: 50 },
    );
    clients.push(next);
    // Full again: the freed slot was taken, not the cap raised.
    expect((await streamClient(port)).status).toBe(503);
    // The clients still stream.
    await s.audit.append({ event: "recovery", run_id: "r-3", action: "released_stale" });
    await until(() => clients.every((c) => c.body().includes('"run_id":"r-3"')), "every client to get the event", {
      timeoutMs: 5000,
      pollMs: 50,
    });
  }, 20_000);

  it("ends every stream when the server closes, so a stop does not wait for its clients", async () => {
    const s = await full();
    await s.app.listen({ host: "127.0.0.1", port: 0 });
    const { port } = s.app.server.address() as AddressInfo;
    const client = await streamClient(port);
    onTestFinished(() => client.close());
    expect(client.status).toBe(200);
    const closed = await Promise.race([s.app.close().then(() => "closed"), sleep(5000).then(() => "still waiting")]);
    expect(closed).toBe("closed");
  }, 20_000);
});

describe("the bearer token", () => {
  it("is created with mode 0600 once and compared in constant time", async () => {
    const dir = await testdir();
    const path = join(dir, "daemon.token");
    const token = await ensureToken(path);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(await ensureToken(path)).toBe(token);
    const { statSync } = await import("node:fs");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(bearerMatches(`Bearer ${token}`, token)).toBe(true);
    expect(bearerMatches(`bearer ${token} `, token)).toBe(true);
    expect(bearerMatches(`Bearer ${token}x`, token)).toBe(false);
    expect(bearerMatches(undefined, token)).toBe(false);
    await writeFile(path, "short\n");
    await expect(ensureToken(path)).rejects.toMatchObject({ code: "DAEMON_TOKEN_INVALID" });
  });
});
