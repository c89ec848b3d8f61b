import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { fullServer } from "../test-fixtures/full-server.ts";
import { escapeHtml, html } from "./escape.ts";
import { phasesOf, runsOf } from "./data.ts";

describe("the page's escape", () => {
  it("escapes every interpolated value, text and attribute alike, and inserts only its own markup as it is", () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe("&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    const inner = html`<b>${"<i>"}</b>`;
    expect(html`<p title="${'"><script>'}">${inner}${["<", html`<br />`]}${null}${undefined}${false}${0}</p>`.text).toBe(
      '<p title="&quot;&gt;&lt;script&gt;"><b>&lt;i&gt;</b>&lt;<br />0</p>',
    );
  });
});

const ev = (ts: string, event: string, run_id: string | null, extra: Record<string, unknown> = {}) =>
  ({ ts, event, run_id, host: "h", pid: 1, ...extra }) as Parameters<typeof phasesOf>[0][number];

describe("a run's row", () => {
  it("takes its phases from its events' timestamps and its downtime from budget_charged", () => {
    const events = [
      ev("2026-12-07T03:00:00Z", "lock_acquired", "r-1"),
      ev("2026-12-07T03:00:02Z", "production_stopped", "r-1"),
      ev("2026-12-07T03:00:05Z", "canary_started", "r-1"),
      ev("2026-12-07T03:00:15Z", "canary_tested", "r-1"),
      ev("2026-12-07T03:00:16Z", "gate_refused", "r-2", { gate: "lock", reason: "held" }),
      ev("2026-12-07T03:00:20Z", "production_restored", "r-1", { seconds: 4 }),
      ev("2026-12-07T03:00:20Z", "budget_charged", "r-1", { seconds: 18.04 }),
      ev("2026-12-07T03:00:21Z", "run_finished", "r-1", { status: "passed", mode: "canary", reason: "ttft p95 120 ms" }),
      ev("2026-12-07T03:00:22Z", "run_finished", "r-2", { status: "refused", mode: "canary" }),
    ];
    expect(phasesOf(events.filter((e) => e.run_id === "r-1"))).toEqual([
      { name: "quiesce", seconds: 2 },
      { name: "canary start", seconds: 3 },
      { name: "load", seconds: 10 },
      { name: "restore", seconds: 5 },
      { name: "finish", seconds: 1 },
    ]);
    const runs = runsOf(events);
    expect(runs.map((r) => [r.runId, r.status, r.downtimeSeconds, r.reason])).toEqual([
      ["r-2", "refused", 0, ""],
      ["r-1", "passed", 18, "ttft p95 120 ms"],
    ]);
  });
});

describe("GET /", () => {
  it("serves a read-only page under a restrictive policy, each part there and every value escaped", async () => {
    const s = await fullServer();
    await s.audit.append({ event: "gate_refused", run_id: "r-1", gate: "window", reason: `<img src=x onerror="alert(1)">` });
    await s.audit.append({ event: "run_finished", run_id: "r-1", status: "refused", mode: "canary", reason: "<b>closed</b>" });
    await mkdir(s.layout.promotionsDir, { recursive: true });
    await writeFile(
      join(s.layout.promotionsDir, "r-0.json"),
      JSON.stringify({
        run_id: "r-0",
        created_at: "2026-12-06T03:00:00Z",
        subsystem: "gpu_allocation",
        candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" },
        path: "quiesced",
        whisper_verified: false,
        llm_latency_ms: 10,
      }),
    );
    const response = await s.app.inject({ method: "GET", url: "/" });
    expect(response.statusCode).toBe(200);
    expect(response.headers["content-type"]).toBe("text/html; charset=utf-8");
    expect(response.headers["content-security-policy"]).toContain("default-src 'self'");
    const body = response.body;
    for (const id of ["windows", "budget", "lock", "production", "runs", "promotions", "audit"])
      expect(body).toContain(`<section id="${id}">`);
    expect(body).not.toMatch(/<img|<b>closed|<form|<script>|style="/i);
    expect(body).toContain("&lt;img src=x onerror=\\&quot;alert(1)\\&quot;&gt;");
    expect(body).toContain('data-lock="free"');
    expect(body).toContain('data-budget="left">60 s<');
    expect(body).toContain('data-promotion="r-0"');
    expect(body).toContain('data-run="r-1"');
    // Seven nights, each opening and closing in the zone with UTC on hover.
    expect(body.match(/<tr data-night="\d{8}">/g)).toHaveLength(7);
    expect(body).toMatch(/<time datetime="[^"]+Z" title="\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC">/);
    for (const link of ["/status", "/audit", "/metrics"]) expect(body).toContain(`href="${link}"`);
    const script = await s.app.inject({ method: "GET", url: "/page.js" });
    expect(script.headers["content-type"]).toContain("text/javascript");
    expect(script.body).toContain('new EventSource("/audit/stream")');
    expect((await s.app.inject({ method: "GET", url: "/page.css" })).headers["content-type"]).toContain("text/css");
    expect((await s.app.inject({ method: "GET", url: "/favicon.ico" })).statusCode).toBe(204);
    // Nothing on it changes anything: only GET and HEAD answer.
    expect((await s.app.inject({ method: "POST", url: "/" })).statusCode).toBe(404);
    await s.app.close();
  });
});
