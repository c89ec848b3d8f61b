import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { GpuCanaryError } from "@gpu-canary/errors";
import { createDowntimeBudget, createRateLimiter, fileBudgetStore, fileRateLimitStore, nightOf } from "@gpu-canary/policy";
import { DateTime } from "luxon";
import type { GlobalOptions, Io } from "../io.ts";
import { runCli } from "../program.ts";

interface Step {
  title: string;
  argv?: string[];
  /** what of the command's output to show; all of it by default */
  show?: (stdout: string) => string;
  expectExit?: number;
  before?: () => Promise<void>;
  check?: (stdout: string) => string | null;
}

/**
 * A guided walk through what gpu-canary enforces today, on a temporary KLR_HOME with its own
 * settings: the caller's KLR_* environment and env file are ignored, so it never touches a real
 * host. It grows as the simulated GPU host, the lock and the canary run arrive.
 */
export async function runDemo(options: GlobalOptions & { keep?: boolean }, io: Io): Promise<number> {
  const home = await mkdtemp(join(tmpdir(), "gpu-canary-demo-"));
  const now = io.now();
  const zone = "America/New_York";
  const local = DateTime.fromJSDate(now, { zone });
  const openWindow = `${local.minus({ hours: 1 }).toFormat("HH:mm")}-${local.plus({ hours: 1 }).toFormat("HH:mm")}`;
  const env = { KLR_HOME: home, KLR_GPU_MAINTENANCE_TZ: zone };
  const indent = (text: string) => text.replace(/^(?=.)/gm, "    ");
  const demoIo = (extra: Record<string, string>, capture: { out: string }): Io => ({
    ...io,
    env: { ...env, ...extra },
    stdout: (text) => (capture.out += text),
    stderr: (text) => io.stderr(indent(text)),
  });
  const settings = requireConfig(loadConfig({ env: { ...env, KLR_GPU_MAINTENANCE_WINDOW: openWindow }, homeDir: home }));
  const layout = layoutFor(settings.config);
  const night = nightOf(settings.config.maintenanceWindow, zone, now);
  const budget = createDowntimeBudget({ storeFor: fileBudgetStore(layout.budgetFile), maxSeconds: 60, now: io.now });
  const limiter = createRateLimiter({
    store: fileRateLimitStore(layout.rateLimits),
    rule: { maxRuns: 3, windowHours: 24, cooldownHours: 0 },
    now: io.now,
  });
  const windowEnv = { KLR_GPU_MAINTENANCE_WINDOW: openWindow };

  const steps: (Step & { env?: Record<string, string> })[] = [
    {
      title: "settings come from $KLR_HOME/.kloros_env; the checklist's appended KLR_CANARY_MODE line wins",
      before: () =>
        writeFile(join(home, ".kloros_env"), "KLR_CANARY_MODE=predictive\nKLR_GPU_MAINTENANCE_MAX_DOWNTIME=60\nKLR_CANARY_MODE=canary\n"),
      argv: ["config", "--json"],
      show: (out) => {
        const mode = (JSON.parse(out) as { settings: Record<string, { text: string; file?: string; line?: number }> }).settings
          .KLR_CANARY_MODE;
        return `KLR_CANARY_MODE=${mode?.text ?? "?"} (from ${mode?.file ?? "?"}:${mode?.line ?? "?"})\n`;
      },
      check: (out) => {
        const json = JSON.parse(out) as { settings: Record<string, { value: unknown }> };
        return json.settings.KLR_CANARY_MODE?.value === "canary" ? null : "KLR_CANARY_MODE should be canary";
      },
    },
    { title: "the default window, 03:00-07:00 New York time, right now", argv: ["window"] },
    {
      title: "on the spring-forward night the 03:00-07:00 window still lasts four real hours",
      argv: ["window", "--at", "2026-03-08T04:00", "--json"],
      show: (out) => {
        const w = JSON.parse(out) as { opens_at: string; closes_at: string };
        return `opens ${w.opens_at}, closes ${w.closes_at}\n`;
      },
      check: (out) => {
        const w = JSON.parse(out) as { opens_at: string; closes_at: string };
        return Date.parse(w.closes_at) - Date.parse(w.opens_at) === 4 * 3600_000 ? null : "the DST window should last 4 h";
      },
    },
    {
      title: `a window set around now (${openWindow}) is open, with the time it has left`,
      env: windowEnv,
      argv: ["window"],
      check: (out) => (out.includes("OPEN") ? null : "the window should be open"),
    },
    {
      title: "a quiesced run's measured downtime (12.5 s) is charged to tonight's budget, once",
      env: windowEnv,
      before: async () => {
        await budget.charge(night, "demo-run-1", 12.5);
        await budget.charge(night, "demo-run-1", 12.5);
      },
      argv: ["budget"],
      check: (out) => (out.includes("Used: 12.5 s of 60 s") ? null : "12.5 s should be used"),
    },
    {
      title: "a corrupt budget file fails closed: exit 4, the file named, nothing changed",
      env: windowEnv,
      before: () => writeFile(layout.budgetFile(night), "{ this is not json"),
      argv: ["budget"],
      expectExit: 4,
    },
    { title: "the emergency reset repairs it, keeping what was there inside the file", env: windowEnv, argv: ["budget", "reset", "--yes"] },
    {
      title: "rate limits: three runs a day per subsystem; the fourth is refused with the time of the next slot",
      before: async () => {
        const lines: string[] = [];
        for (const run of ["demo-a", "demo-b", "demo-c", "demo-d"]) {
          const decision = await limiter.admit("gpu_allocation", run);
          lines.push(`${run}: ${decision.allowed ? "admitted" : "refused"} (${decision.reason})`);
        }
        io.stdout(lines.map((l) => `    ${l}\n`).join(""));
      },
    },
  ];

  let failed: string | null = null;
  try {
    for (const [index, step] of steps.entries()) {
      io.stdout(`${options.json ? "" : "▸ "}${index + 1}. ${step.title}\n`);
      await step.before?.();
      if (!step.argv) continue;
      const capture = { out: "" };
      const code = await runCli(step.argv, demoIo(step.env ?? {}, capture));
      io.stdout(indent(step.show ? step.show(capture.out) : capture.out));
      const problem =
        code !== (step.expectExit ?? 0) ? `exit ${code}, expected ${step.expectExit ?? 0}` : (step.check?.(capture.out) ?? null);
      if (problem) {
        failed = `step ${index + 1} (${step.title}): ${problem}`;
        break;
      }
    }
  } finally {
    if (options.keep) io.stdout(`KLR_HOME kept at ${home}\n`);
    else await rm(home, { recursive: true, force: true });
  }
  if (failed)
    throw new GpuCanaryError("DEMO_FAILED", `the demo failed at ${failed}`, {
      kind: "fault",
      hint: "run `gpu-canary demo --keep --debug` and inspect the files",
    });
  io.stdout("The demo finished: every step above ran against real files in a temporary KLR_HOME.\n");
  return 0;
}
