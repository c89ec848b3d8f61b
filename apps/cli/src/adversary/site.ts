import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AuditFeed, createAuditFeed } from "@gpu-canary/audit-feed";
import { type Layout, layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { type SimSite, createSimSite } from "@gpu-canary/vllm-sim";
import { asRecord, cleanEnv } from "./processes.ts";

export type Quiesce = "stop" | "sleep";

/** One row's simulated production host and what the harness reads of it: files, audit trail, settings. */
export interface RowSite {
  sim: SimSite;
  layout: Layout;
  audit: AuditFeed;
  slaSeconds: number;
  /** one line per production start command run, its time in ns (the harness's wrapper writes it) */
  startsFile: string;
  /** the environment every gpu-canary process of this row gets */
  env: Record<string, string>;
  /** the times (ms) production's start command ran at */
  starts(): number[];
  /** the lock file's journal phase now */
  lockPhase(): string;
  /** the seconds_used of a night's budget file (null: no file, or one that cannot be read) */
  budgetUsed(night: string): number | null;
  cleanup(): Promise<void>;
}

function startsIn(file: string): number[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => /^\d+$/.test(line))
    .map((ns) => Number(BigInt(ns) / 1_000_000n));
}

function phaseOf(lockFile: string): string {
  if (!existsSync(lockFile)) return "no lock";
  const record = readJson(lockFile);
  if (!record) return "unreadable";
  // A lock taken but not yet journaled (before the gates under it passed) has no phase.
  return typeof record.phase === "string" ? record.phase : "none yet";
}

function readJson(path: string): Record<string, unknown> | null {
  try {
    return asRecord(JSON.parse(readFileSync(path, "utf8")));
  } catch {
    return null;
  }
}

/**
 * A fresh simulated site with production serving. The production start command is wrapped: it
 * counts its runs (the trigger of the "after its start command" rows, and a second start shows
 * there), and drops the canary's SIM_TOKEN_LATENCY_MS, which a run passes on to every command it
 * runs — production restarted with it would answer the prober slowly for the harness's reason.
 */
export async function openSite(quiesce: Quiesce, settings: Record<string, string> = {}): Promise<RowSite> {
  const dir = await mkdtemp(join(tmpdir(), "gpu-canary-signal-"));
  let sim: SimSite;
  try {
    sim = await createSimSite(dir, { settings: { KLR_QUIESCE: quiesce, ...settings } });
    await sim.startProduction();
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }
  const { config } = requireConfig(loadConfig({ env: sim.env, homeDir: sim.home }));
  const layout = layoutFor(config);
  const startsFile = join(dir, "production-starts");
  const start = `date +%s%N >> ${startsFile}; unset SIM_TOKEN_LATENCY_MS; ${sim.env.KLR_PRODUCTION_START_COMMAND ?? ""}`;
  return {
    sim,
    layout,
    audit: createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone }),
    slaSeconds: config.restoreSlaSeconds,
    startsFile,
    env: { ...cleanEnv(), ...sim.env, KLR_PRODUCTION_START_COMMAND: start },
    starts: () => startsIn(startsFile),
    lockPhase: () => phaseOf(layout.gpuLock),
    budgetUsed: (night) => {
      const used = readJson(layout.budgetFile(night))?.seconds_used;
      return typeof used === "number" ? used : null;
    },
    async cleanup() {
      // The sim's own cleanup ends what this site started (production, canaries, watchdog restarts).
      await sim.cleanup();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
