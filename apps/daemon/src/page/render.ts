import type { AuditLine } from "@gpu-canary/audit-feed";
import { AUDIT_EVENT_NAMES } from "@gpu-canary/audit-feed";
import { isUnavailable } from "@gpu-canary/spica-evaluator";
import { type SafeHtml, html } from "./escape.ts";
import type { PageData, Phase, RunRow, WindowRow } from "./data.ts";

/** "2026-12-07 03:00:00" (Swedish writes dates as ISO 8601 does). */
const UTC = new Intl.DateTimeFormat("sv-SE", { timeZone: "UTC", dateStyle: "short", timeStyle: "medium" });

/** A moment in the maintenance zone, UTC on hover. */
export function time(at: Date, zone: string, withDate = true): SafeHtml {
  const local = new Intl.DateTimeFormat("en-GB", {
    timeZone: zone,
    ...(withDate ? { weekday: "short", day: "numeric", month: "short" } : {}),
    hour: "2-digit",
    minute: "2-digit",
    second: withDate ? undefined : "2-digit",
    hourCycle: "h23",
  }).format(at);
  const utc = `${UTC.format(at)} UTC`;
  return html`<time datetime="${at.toISOString()}" title="${utc}">${local}</time>`;
}

const seconds = (s: number) => `${Math.round(s * 10) / 10} s`;
const pct = (part: number, whole: number) => (whole > 0 ? Math.max(0, Math.min(100, (part / whole) * 100)) : 0).toFixed(2);

function unavailable(part: unknown): SafeHtml | null {
  return isUnavailable(part) ? html`<p class="bad">unavailable: ${part.error.code} — ${part.error.message}</p>` : null;
}

function windowsSection(d: PageData): SafeHtml {
  const start = d.now.getTime() - 6 * 3_600_000;
  const end = Math.max(start + 7 * 86_400_000, (d.windows.at(-1)?.closesAt.getTime() ?? 0) + 6 * 3_600_000);
  const x = (t: number) => pct(t - start, end - start);
  const rect = (w: WindowRow) => {
    const from = Math.max(w.opensAt.getTime(), start);
    return html`<rect
      class="${w.open ? "win open" : "win"}"
      x="${x(from)}%"
      y="4"
      width="${pct(w.closesAt.getTime() - from, end - start)}%"
      height="24"
      ><title>${w.night}: ${w.opensAt.toISOString()} – ${w.closesAt.toISOString()}</title></rect
    >`;
  };
  const state = d.status.window;
  return html`<section id="windows">
    <h2>Maintenance windows <small>${state.window} in ${d.timeZone}</small></h2>
    <p>
      The window is
      <strong class="${state.open ? "ok" : ""}">${state.open ? "open" : "closed"}</strong
      >${state.open ? html`, closing ${time(new Date(state.closes_at), d.timeZone)}` : html`, opening ${time(new Date(state.opens_at), d.timeZone)}`}.
    </p>
    <svg class="timeline" role="img" aria-label="the next 7 nights' windows, now marked" preserveAspectRatio="none">
      <rect class="track" x="0" y="4" width="100%" height="24" />
      ${d.windows.map(rect)}
      <line class="now" x1="${x(d.now.getTime())}%" x2="${x(d.now.getTime())}%" y1="0" y2="32" />
    </svg>
    <table>
      <thead>
        <tr>
          <th>Night</th>
          <th>Opens</th>
          <th>Closes</th>
          <th></th>
        </tr>
      </thead>
      <tbody>
        ${d.windows.map(
          (w) =>
            html`<tr data-night="${w.night}">
              <td>${w.night}</td>
              <td>${time(w.opensAt, d.timeZone)}</td>
              <td>${time(w.closesAt, d.timeZone)}</td>
              <td>${w.open ? html`<strong class="ok">open now</strong>` : ""}</td>
            </tr>`,
        )}
      </tbody>
    </table>
  </section>`;
}

function budgetSection(d: PageData): SafeHtml {
  const b = d.status.budget;
  const missing = unavailable(b);
  if (missing || isUnavailable(b))
    return html`<section id="budget">
      <h2>Tonight's budget</h2>
      ${missing}
    </section>`;
  const worst = "seconds" in d.worst ? d.worst.seconds : null;
  const fits = worst === null ? null : Math.min(worst, b.seconds_left);
  return html`<section id="budget">
    <h2>Tonight's budget <small>night ${b.date}</small></h2>
    <svg class="bar" role="img" aria-label="downtime used, a run's worst case and left" preserveAspectRatio="none">
      <rect class="track" x="0" y="0" width="100%" height="20" />
      <rect class="used" x="0" y="0" width="${pct(b.seconds_used, b.max_seconds)}%" height="20" />
      ${fits === null ? "" : html`<rect class="worst" x="${pct(b.seconds_used, b.max_seconds)}%" y="0" width="${pct(fits, b.max_seconds)}%" height="20" />`}
    </svg>
    <dl class="figures">
      <dt>used</dt>
      <dd data-budget="used">${seconds(b.seconds_used)}</dd>
      <dt>of</dt>
      <dd data-budget="max">${seconds(b.max_seconds)}</dd>
      <dt>left</dt>
      <dd data-budget="left">${seconds(b.seconds_left)}</dd>
      <dt>a run's worst case</dt>
      <dd data-budget="worst" title="${"basis" in d.worst ? d.worst.basis : d.worst.error}">
        ${worst === null ? "unknown" : seconds(worst)}
      </dd>
    </dl>
    ${b.exhausted ? html`<p class="bad">Exhausted: no quiesced run until the next night.</p>` : worst !== null && worst > b.seconds_left ? html`<p class="bad">Less left than a run's worst case: quiesced runs are refused tonight.</p>` : ""}
  </section>`;
}

function lockSection(d: PageData): SafeHtml {
  const l = d.status.lock;
  const missing = unavailable(l);
  if (missing || isUnavailable(l))
    return html`<section id="lock">
      <h2>Lock</h2>
      ${missing}
    </section>`;
  const h = l.holder;
  const daemon = d.status.daemon;
  return html`<section id="lock">
    <h2>Lock</h2>
    <p data-lock="${l.held ? "held" : "free"}">
      ${l.held && h ? html`Held by <strong>${h.owner}</strong>${h.run_id ? html` (run ${h.run_id})` : ""}, PID ${h.pid} on ${h.host}${h.phase ? html`, ${h.phase}` : ""}` : html`<strong>free</strong>`}
    </p>
    ${l.awaits_recovery ? html`<p class="bad">A crashed run awaits recovery: ${l.reason}</p>` : ""}
    ${daemon ? html`<p>The daemon is ${typeof daemon.working === "string" ? html`working <strong>${daemon.working}</strong>` : "idle"}${typeof daemon.deferred_until === "string" ? html`; deferred until ${time(new Date(daemon.deferred_until), d.timeZone)}` : ""}.</p>` : ""}
  </section>`;
}

function productionSection(d: PageData): SafeHtml {
  const p = d.status.production;
  const a = d.applied;
  const appliedPart =
    a === null
      ? html`<dd>nothing applied by gpu-canary yet</dd>`
      : "error" in a
        ? html`<dd class="bad">unreadable: ${a.error}</dd>`
        : html`<dd>
            gpu_memory_utilization ${a.vllm_memory_util ?? "?"}, Whisper
            ${a.whisper_model_size}${a.promotion_run_id ? html`, promotion ${a.promotion_run_id}` : ""}${a.applied_at ? html`, applied ${time(new Date(a.applied_at), d.timeZone)}` : ""}
          </dd>`;
  return html`<section id="production">
    <h2>Production</h2>
    <dl>
      <dt>serving</dt>
      <dd data-production="serving">
        ${isUnavailable(p) ? html`<span class="bad">unknown: ${p.error.message}</span>` : p.health === "healthy" ? html`<strong class="ok">yes</strong> (${p.url}${p.version ? `, vLLM ${p.version}` : ""})` : html`<strong class="bad">no</strong> (${p.health}, ${p.url})`}
      </dd>
      <dt>applied</dt>
      ${appliedPart}
      <dt>last restore</dt>
      <dd>
        ${d.lastRestore ? html`${time(d.lastRestore.at, d.timeZone)}${d.lastRestore.seconds === null ? "" : ` in ${seconds(d.lastRestore.seconds)}`}` : "none in 30 days"}
      </dd>
    </dl>
  </section>`;
}

function phaseBar(phases: Phase[]): SafeHtml {
  const total = phases.reduce((s, p) => s + p.seconds, 0);
  let at = 0;
  const rects = phases.map((p) => {
    const r = html`<rect
      class="phase ${p.name.replace(/\s+/g, "-")}"
      x="${pct(at, total)}%"
      y="0"
      width="${pct(p.seconds, total)}%"
      height="14"
      ><title>${p.name} ${seconds(p.seconds)}</title></rect
    >`;
    at += p.seconds;
    return r;
  });
  return html`<svg class="phases" role="img" aria-label="the run's phases" preserveAspectRatio="none">${rects}</svg
    ><small>${phases.map((p, i) => html`${i ? " → " : ""}${p.name} ${seconds(p.seconds)}`)}</small>`;
}

function runRow(r: RunRow, zone: string): SafeHtml {
  return html`<tr data-run="${r.runId}">
    <td>${time(r.at, zone)}<br /><small>${r.runId}</small></td>
    <td>${r.mode}</td>
    <td><strong class="verdict ${r.status}">${r.status}</strong></td>
    <td class="reason">${r.reason}</td>
    <td>${seconds(r.downtimeSeconds)}</td>
    <td class="timeline-cell">${phaseBar(r.phases)}</td>
  </tr>`;
}

function runsSection(d: PageData): SafeHtml {
  return html`<section id="runs">
    <h2>Last runs</h2>
    ${
      d.runs.length === 0
        ? html`<p>No run in 30 days.</p>`
        : html`<div class="scroll">
            <table>
              <thead>
                <tr>
                  <th>Finished</th>
                  <th>Mode</th>
                  <th>Verdict</th>
                  <th>Why</th>
                  <th>Downtime</th>
                  <th>Timeline</th>
                </tr>
              </thead>
              <tbody>
                ${d.runs.map((r) => runRow(r, d.timeZone))}
              </tbody>
            </table>
          </div>`
    }
  </section>`;
}

function promotionsSection(d: PageData): SafeHtml {
  const applied = d.applied && !("error" in d.applied) ? d.applied : null;
  // what gpu-canary applied, else what production says it serves (Whisper as the settings name it)
  const current = applied
    ? `${applied.vllm_memory_util ?? "?"} / ${applied.whisper_model_size}`
    : d.served !== null
      ? `${d.served.util} / ${d.served.whisper} (serving)`
      : "not known";
  return html`<section id="promotions">
    <h2>Promotions</h2>
    ${
      d.promotions.length === 0
        ? html`<p>None.</p>`
        : html`<div class="scroll">
              <table>
                <thead>
                  <tr>
                    <th>Run</th>
                    <th>State</th>
                    <th>Current</th>
                    <th>Candidate</th>
                    <th>Passes</th>
                  </tr>
                </thead>
                <tbody>
                  ${d.promotions
                    .slice()
                    .reverse()
                    .map(
                      (p) =>
                        html`<tr data-promotion="${p.run_id}">
                          <td>${time(new Date(p.created_at), d.timeZone)}<br /><small>${p.run_id}</small></td>
                          <td>${p.state}</td>
                          <td>${current}</td>
                          <td>${p.candidate.vllm_memory_util} / ${p.candidate.whisper_model_size}</td>
                          <td>${1 + p.passes.length}</td>
                        </tr>`,
                    )}
                </tbody>
              </table>
            </div>
            <p><small>gpu_memory_utilization / Whisper size.</small></p>`
    }${d.unreadablePromotions.map((u) => html`<p class="bad">unreadable: ${u.file} — ${u.reason}</p>`)}
  </section>`;
}

/** An event's own fields are cut to this many characters in the tail (whole in the title, and in /audit). */
const DETAIL = 240;

const COMMON = new Set(["ts", "event", "run_id", "host", "pid"]);

/** One audit line as the tail shows it (the page's script builds the same from the stream). */
function auditItem(e: AuditLine, zone: string): SafeHtml {
  const { ts, event, run_id } = e;
  const rest = Object.fromEntries(Object.entries(e).filter(([key]) => !COMMON.has(key)));
  const detail = JSON.stringify(rest);
  return html`<li>
    ${time(new Date(ts), zone)} <strong>${event}</strong>${run_id ? html` <small>${run_id}</small>` : ""}
    <code title="${detail.length > DETAIL ? detail : ""}">${detail.length > DETAIL ? `${detail.slice(0, DETAIL)}…` : detail}</code>
  </li>`;
}

function auditSection(d: PageData): SafeHtml {
  return html`<section id="audit">
    <h2>
      Audit <small id="live" data-zone="${d.timeZone}" data-events="${AUDIT_EVENT_NAMES.join(" ")}">live updates need JavaScript</small>
    </h2>
    <ol id="audit-tail">
      ${d.tail.map((e) => auditItem(e, d.timeZone))}
    </ol>
  </section>`;
}

/** The whole page: read-only, no form, nothing loaded but the daemon's own /page.css and /page.js. */
export function renderPage(d: PageData): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>gpu-canaryd</title>
        <link rel="stylesheet" href="/page.css" />
        <script src="/page.js" defer></script>
      </head>
      <body>
        <header>
          <h1>gpu-canaryd <small>${d.version}</small></h1>
          <p>
            As of ${time(d.now, d.timeZone)} (${d.timeZone}) · <a href="/status">/status</a> · <a href="/audit">/audit</a> ·
            <a href="/metrics">/metrics</a> · <a href="/promotions">/promotions</a>
          </p>
        </header>
        <main>
          ${windowsSection(d)}${budgetSection(d)}${lockSection(d)}${productionSection(d)}${runsSection(d)}${promotionsSection(d)}${auditSection(d)}
        </main>
      </body>
    </html> `.text;
}
