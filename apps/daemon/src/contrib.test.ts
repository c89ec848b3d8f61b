import { spawnSync } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { fullServer } from "./test-fixtures/full-server.ts";

/** contrib/ at the repository's root: the Grafana dashboard and the Prometheus rules shipped for the daemon's /metrics. */
const contrib = fileURLToPath(new URL("../../../contrib/", import.meta.url));
const rulesFile = join(contrib, "prometheus", "gpu-canary.rules.yml");
const rulesTestFile = join(contrib, "prometheus", "gpu-canary.rules.test.yml");
const dashboardFile = join(contrib, "grafana", "gpu-canary.json");

const promtool = spawnSync("promtool", ["--version"]).status === 0;
const noPromtool = "promtool is not installed: `apt-get install prometheus` (Debian) provides it; .ci/run installs it";

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  templating: { list: { name: string; type: string; query?: unknown; datasource?: { uid?: string } }[] };
  panels: Panel[];
}

const readDashboard = async () => JSON.parse(await readFile(dashboardFile, "utf8")) as Dashboard;
const panelsOf = (dashboard: Dashboard) => dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]).filter((p) => p.type !== "row");

/** The gpu_canary_ names a PromQL expression reads (a histogram's _bucket, _sum and _count are its own series in /metrics). */
const metricNames = (expr: string) => [...expr.matchAll(/\bgpu_canary_[a-z0-9_]+/g)].map((m) => m[0]);

/** The `expr:` of every rule, read as text: a one-line expression or a folded (`>-`) block. */
function ruleExpressions(yaml: string): string[] {
  const expressions: string[] = [];
  const lines = yaml.split("\n");
  lines.forEach((line, i) => {
    const expr = /^(\s*)expr:\s*(.*)$/.exec(line);
    if (!expr) return;
    const [, indent = "", rest = ""] = expr;
    if (rest !== ">-" && rest !== ">" && rest !== "|") return void expressions.push(rest);
    const block: string[] = [];
    for (const next of lines.slice(i + 1)) {
      if (next.trim() !== "" && next.search(/\S/) <= indent.length) break;
      block.push(next.trim());
    }
    expressions.push(block.join(" "));
  });
  return expressions;
}

/** The daemon's /metrics on a host where every series has data: a live lock, each kind of audit line, a promotion, a run. */
async function everySeries() {
  const s = await fullServer();
  await mkdir(s.layout.locksDir, { recursive: true });
  await writeFile(
    s.layout.gpuLock,
    JSON.stringify({
      pid: process.pid,
      host: hostname(),
      owner: "gpu-canary",
      acquired_at: new Date(Date.now() - 60_000).toISOString(),
      expires_at: "2099-01-01T00:00:00Z",
      run_id: "r-live",
    }),
  );
  const candidate = { vllm_memory_util: 0.8, whisper_model_size: "base" };
  await s.audit.append({
    event: "run_finished",
    run_id: "r-1",
    status: "passed",
    mode: "canary",
    subsystem: "gpu_allocation",
    candidate,
    reason: "",
  });
  await s.audit.append({ event: "budget_charged", run_id: "r-1", date: "2026-11-28", seconds: 12, seconds_used: 12, max_seconds: 60 });
  await s.audit.append({ event: "production_restored", run_id: "r-1", seconds: 8, downtime_seconds: 12, already_serving: false });
  await s.audit.append({
    event: "canary_tested",
    run_id: "r-1",
    path: "quiesced",
    samples: 5,
    errors: [],
    died: false,
    timed_out: false,
    load: null,
    preemptions: 0,
    kv_cache_usage_peak: 0.4,
    ttft_p95_ms: 350,
    itl_p95_ms: 45,
  });
  await s.audit.append({
    event: "watchdog_fired",
    run_id: "r-0",
    fired_at: "2026-11-28T08:00:05Z",
    reason: "armer died",
    production_serving_at: null,
    error: null,
  });
  await mkdir(s.layout.promotionsDir, { recursive: true });
  await writeFile(
    join(s.layout.promotionsDir, "r-1.json"),
    JSON.stringify({
      run_id: "r-1",
      created_at: "2026-11-28T08:00:00Z",
      subsystem: "gpu_allocation",
      candidate,
      path: "quiesced",
      whisper_verified: true,
      llm_latency_ms: 120,
    }),
  );
  const response = await s.app.inject({ method: "GET", url: "/metrics" });
  expect(response.statusCode).toBe(200);
  return response.body;
}

describe("contrib/prometheus/gpu-canary.rules.yml", () => {
  it("passes `promtool check rules`", (context) => {
    if (!promtool) context.skip(noPromtool);
    const check = spawnSync("promtool", ["check", "rules", rulesFile], { encoding: "utf8" });
    expect(`${check.stdout}${check.stderr}`).toContain("SUCCESS");
    expect(check.status).toBe(0);
  });

  it("fires its alerts on synthetic series (`promtool test rules` with gpu-canary.rules.test.yml)", async (context) => {
    if (!promtool) context.skip(noPromtool);
    const tests = await readFile(rulesTestFile, "utf8");
    for (const alert of ["GpuCanaryBudgetExhausted", "GpuCanaryCrashedRunAwaitsRecovery"]) expect(tests).toContain(`alertname: ${alert}`);
    const run = spawnSync("promtool", ["test", "rules", rulesTestFile], { encoding: "utf8" });
    expect(`${run.stdout}${run.stderr}`).toContain("SUCCESS");
    expect(run.status).toBe(0);
  });

  it("gives every alert a severity, a summary, and a description that names the gpu-canary command to run", async () => {
    const yaml = await readFile(rulesFile, "utf8");
    const alerts = yaml.split(/^\s*- alert: /m).slice(1);
    expect(alerts.map((a) => a.split("\n")[0])).toEqual([
      "GpuCanaryDaemonDown",
      "GpuCanaryBudgetExhausted",
      "GpuCanaryCrashedRunAwaitsRecovery",
      "GpuCanaryWatchdogFired",
      "GpuCanaryProductionNotServing",
      "GpuCanaryLockHeldLong",
      "GpuCanaryRestoreSlowerThanSla",
      "GpuCanaryIntentsPilingUp",
    ]);
    for (const alert of alerts) {
      expect(alert, alert).toMatch(/\n\s+severity: (critical|warning|info)\n/);
      expect(alert, alert).toMatch(/\n\s+summary: /);
      expect(alert, alert).toMatch(/description:[^]*`gpu-canary [a-z]+/);
    }
  });
});

describe("contrib/grafana/gpu-canary.json", () => {
  it("parses, has a uid and a prometheus datasource variable, and every panel's query uses ${datasource}", async () => {
    const dashboard = await readDashboard();
    expect(dashboard.uid).toBe("gpu-canary");
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.templating.list).toContainEqual(
      expect.objectContaining({ name: "datasource", type: "datasource", query: "prometheus" }),
    );
    const panels = panelsOf(dashboard);
    expect(panels.length).toBeGreaterThanOrEqual(10);
    for (const panel of panels) {
      expect(panel.datasource?.uid, panel.title).toBe("${datasource}");
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? []) {
        expect(target.datasource?.uid, panel.title).toBe("${datasource}");
        expect(target.expr, panel.title).toMatch(/gpu_canary_/);
      }
    }
    for (const variable of dashboard.templating.list.filter((v) => v.type === "query"))
      expect(variable.datasource?.uid).toBe("${datasource}");
    // What the issue asks the dashboard to show, each in some panel.
    const titles = panels.map((p) => p.title.toLowerCase()).join("\n");
    for (const part of [
      "budget",
      "window",
      "lock",
      "verdict",
      "restore",
      "ttft",
      "preemptions",
      "promotions",
      "intents",
      "production serving",
      "watchdog",
      "crashed run",
    ])
      expect(titles).toContain(part);
  });
});

describe("the names contrib/ reads", () => {
  it("are all in the daemon's /metrics once the host has data for every series", async (context) => {
    const text = await everySeries();
    const exposed = new Set(
      text
        .split("\n")
        .filter((line) => line !== "" && !line.startsWith("#"))
        .map((line) => /^[a-zA-Z_:][\w:]*/.exec(line)?.[0]),
    );
    const dashboard = await readDashboard();
    const fromDashboard = panelsOf(dashboard).flatMap((p) => (p.targets ?? []).flatMap((t) => metricNames(t.expr ?? "")));
    const fromVariables = dashboard.templating.list.flatMap((v) => metricNames(JSON.stringify(v.query ?? "")));
    const fromRules = ruleExpressions(await readFile(rulesFile, "utf8")).flatMap(metricNames);
    expect(fromRules.length).toBeGreaterThanOrEqual(8);
    const named = new Set([...fromDashboard, ...fromVariables, ...fromRules]);
    expect(named.size).toBeGreaterThanOrEqual(15);
    expect([...named].filter((name) => !exposed.has(name)).sort()).toEqual([]);
    // And the whole output, every series present, passes Prometheus' own lint.
    if (!promtool) context.skip(noPromtool);
    const lint = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(`${lint.stdout}${lint.stderr}`.trim()).toBe("");
    expect(lint.status).toBe(0);
  });
});
