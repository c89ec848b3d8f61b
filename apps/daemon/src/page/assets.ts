/**
 * The page's stylesheet and script, served by the daemon itself (GET /page.css, GET /page.js) so
 * that the Content-Security-Policy allows nothing but 'self'. The script only follows
 * /audit/stream into the audit tail; the page reads the same without it.
 */
export const PAGE_CSS = `
:root { color-scheme: light dark; --ok: #1a7f37; --bad: #cf222e; --used: #d4a72c; --worst: #8250df; --win: #2f81f7; --muted: #8c959f; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 0 12px 24px; max-width: 1100px; }
h1 { font-size: 1.4em; margin: 12px 0 0; } h2 { font-size: 1.1em; margin: 20px 0 6px; } small { color: var(--muted); font-weight: normal; }
section { border-top: 1px solid #d0d7de55; }
.ok { color: var(--ok); } .bad { color: var(--bad); }
svg { display: block; width: 100%; }
svg.timeline { height: 32px; } svg.bar { height: 20px; } svg.phases { height: 14px; min-width: 120px; }
.track { fill: #d0d7de55; } .win { fill: var(--win); } .win.open { fill: var(--ok); }
.now { stroke: var(--bad); stroke-width: 2; }
.used { fill: var(--used); } .worst { fill: var(--worst); opacity: .6; }
.phase { fill: var(--muted); } .phase.quiesce { fill: var(--used); } .phase.canary-start, .phase.canary-ready { fill: var(--win); }
.phase.load { fill: var(--worst); } .phase.restore { fill: var(--ok); } .phase.canary-stop { fill: #57606a; }
dl.figures { display: flex; flex-wrap: wrap; gap: 2px 8px; } dl.figures dt { color: var(--muted); } dl.figures dd { margin: 0 8px 0 0; font-weight: 600; }
dl:not(.figures) dt { font-weight: 600; } dl:not(.figures) dd { margin: 0 0 6px 0; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: 3px 6px; vertical-align: top; border-bottom: 1px solid #d0d7de33; }
td.reason { max-width: 28em; overflow-wrap: anywhere; } td.timeline-cell { min-width: 140px; }
.scroll { overflow-x: auto; max-width: 100%; } .scroll table { min-width: 640px; }
.verdict.passed { color: var(--ok); } .verdict.failed, .verdict.error { color: var(--bad); }
#audit-tail { padding-left: 1.5em; font-size: 12.5px; } #audit-tail code { overflow-wrap: anywhere; color: var(--muted); }
#audit-tail li.new { animation: arrive 2s ease-out; } @keyframes arrive { from { background: #2f81f733; } }
`;

export const PAGE_SCRIPT = `"use strict";
(() => {
  const live = document.getElementById("live");
  const list = document.getElementById("audit-tail");
  if (!live || !list || typeof EventSource === "undefined") return;
  const format = new Intl.DateTimeFormat("en-GB", {
    timeZone: live.dataset.zone, weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  const element = (tag, text, className) => {
    const node = document.createElement(tag);
    node.textContent = text;
    if (className) node.className = className;
    return node;
  };
  const add = (message) => {
    let event;
    try { event = JSON.parse(message.data); } catch { return; }
    const { ts, event: name, run_id: runId, host, pid, ...rest } = event;
    const item = element("li", "", "new");
    const at = element("time", format.format(new Date(ts)));
    at.dateTime = ts;
    at.title = String(ts).slice(0, 19).replace("T", " ") + " UTC";
    item.append(at, " ", element("strong", name));
    if (runId) item.append(" ", element("small", runId));
    const detail = JSON.stringify(rest);
    const code = element("code", detail.length > 240 ? detail.slice(0, 240) + "…" : detail);
    if (detail.length > 240) code.title = detail;
    item.append(" ", code);
    list.append(item);
    while (list.children.length > 200) list.firstElementChild.remove();
  };
  const source = new EventSource("/audit/stream");
  for (const name of (live.dataset.events || "").split(" ")) if (name) source.addEventListener(name, add);
  source.addEventListener("open", () => { live.textContent = "live"; });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; });
})();
`;
