import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Quiesce, RowSite } from "./site.ts";

export type Signal = "SIGKILL" | "SIGTERM";

/** The moment a row's signal is sent at. */
export type Trigger =
  /** this audit event is in the trail */
  | { kind: "event"; event: string }
  /** the canary answers GET /health with 200: it is being tested */
  | { kind: "canary_healthy" }
  /** production's start command ran (the site's start wrapper wrote its line) */
  | { kind: "production_start" }
  /** the canary command itself signals its parent, the run, as it launches */
  | { kind: "launcher" };

export interface Scenario {
  quiesce: Quiesce;
  phase: string;
  signal: Signal;
  target: "evaluate" | "daemon";
  trigger: Trigger;
  /** environment for the run (and the recover after it) on top of the site's */
  env(site: RowSite): Promise<Record<string, string>>;
  /** for a phase only a race can hit: why the signal at `signalAt` missed it (null: it hit) */
  missed?: (site: RowSite, signalAt: number) => string | null;
}

const none = () => Promise.resolve({});
// The canary still loading when `canary_started` is seen: it listens only after 3 s.
const slowCanaryStart = () => Promise.resolve({ SIM_STARTUP_DELAY_MS: "3000" });
// Each test completion takes seconds, so a healthy canary is still under test when the signal lands.
const slowCanaryTokens = () => Promise.resolve({ SIM_TOKEN_LATENCY_MS: "200" });
// Production restarted by the run listens only after 3 s: the signal lands mid-start.
const slowProductionStart = () => Promise.resolve({ PRODUCTION_STARTUP_DELAY_MS: "3000" });

/**
 * A canary command that signals the run the instant it launches, then becomes the simulated vLLM:
 * the gap between launching the canary and the watchdog (or the run's own unwinding) knowing it.
 * It leaves a file behind whose time is the moment of the signal.
 */
async function launcherKilling(site: RowSite, signal: Signal): Promise<Record<string, string>> {
  const wrapper = join(site.sim.dir, "vllm-signalling-its-caller");
  const marker = launcherMarker(site);
  const vllm = site.sim.env.KLR_VLLM_COMMAND ?? "";
  await writeFile(wrapper, `#!/bin/sh\n: > ${marker}\nkill -${signal.slice(3)} "$PPID"\nexec ${vllm} "$@"\n`, { mode: 0o755 });
  return { KLR_VLLM_COMMAND: wrapper };
}

export const launcherMarker = (site: RowSite) => join(site.sim.dir, "launcher-signalled");

/**
 * The way back runs production's start command within milliseconds of `canary_stopped`: a signal
 * sent on seeing the event may land after it. The start wrapper's times tell which it was; its time
 * is taken a few milliseconds after the run spawned it, so a start that close after the signal
 * may have been spawned before it and counts as a miss.
 */
const SPAWN_MS = 5;
function startedBefore(site: RowSite, signalAt: number): string | null {
  const first = site.starts()[0];
  return first !== undefined && first < signalAt + SPAWN_MS
    ? `production's start command ran ${first - signalAt} ms from the signal (spawned before it)`
    : null;
}

const PHASES: { phase: string; trigger: Trigger; env: Scenario["env"] | "launcher"; missed?: Scenario["missed"] }[] = [
  { phase: "just after the lock", trigger: { kind: "event", event: "lock_acquired" }, env: none },
  { phase: "just after the quiesce", trigger: { kind: "event", event: "production_stopped" }, env: none },
  { phase: "launcher dies at launch", trigger: { kind: "launcher" }, env: "launcher" },
  { phase: "canary starting", trigger: { kind: "event", event: "canary_started" }, env: slowCanaryStart },
  { phase: "testing", trigger: { kind: "canary_healthy" }, env: slowCanaryTokens },
  { phase: "restore, before start command", trigger: { kind: "event", event: "canary_stopped" }, env: none, missed: startedBefore },
  { phase: "restore, after start command", trigger: { kind: "production_start" }, env: slowProductionStart },
];

// Sleep mode wakes production instead of running its start command: one restore row.
const SLEEP_PHASES = new Set(["just after the quiesce", "testing", "restore, before start command"]);
const SIGNALS: Signal[] = ["SIGKILL", "SIGTERM"];

/** The matrix: every phase × signal with stop, three phases × signal with sleep, the daemon row. */
export function scenarios(): Scenario[] {
  const rows: Scenario[] = [];
  for (const quiesce of ["stop", "sleep"] as const) {
    for (const p of PHASES) {
      if (quiesce === "sleep" && !SLEEP_PHASES.has(p.phase)) continue;
      for (const signal of SIGNALS) {
        const env = p.env;
        rows.push({
          quiesce,
          phase: quiesce === "sleep" && p.phase === "restore, before start command" ? "restore (waking)" : p.phase,
          signal,
          target: "evaluate",
          trigger: p.trigger,
          env: env === "launcher" ? (site) => launcherKilling(site, signal) : env,
          ...(quiesce === "stop" && p.missed ? { missed: p.missed } : {}),
        });
      }
    }
  }
  rows.push({
    quiesce: "stop",
    phase: "gpu-canaryd, canary under test",
    signal: "SIGTERM",
    target: "daemon",
    trigger: { kind: "canary_healthy" },
    env: slowCanaryTokens,
  });
  return rows;
}

export const rowName = (s: Scenario) => `${s.quiesce} / ${s.phase} / ${s.signal}`;
