import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { GpuCanaryError } from "@gpu-canary/errors";
import type { RolloutAssignment, RolloutResult } from "@gpu-canary/fleet-store";
import type { SettingsChangeOutcome, SpicaGPUAllocation } from "@gpu-canary/spica-evaluator";
import { testdir } from "@gpu-canary/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createRolloutStep, rolloutResultOf } from "./rollout-step.ts";

// 04:00 UTC: inside the default window (03:00–07:00) in UTC.
const OPEN = new Date("2026-12-07T04:00:00.000Z");
const CLOSED = new Date("2026-12-07T12:00:00.000Z");

const PROMOTION = {
  run_id: "r-proven",
  created_at: OPEN.toISOString(),
  subsystem: "gpu_allocation",
  candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" },
  path: "quiesced",
  whisper_verified: true,
  llm_latency_ms: 12,
  state: "applied",
  state_reason: "applied and verified by run r-x",
};

/** A host with the window open or closed, and a fleet that assigns it r-proven and records what it is told. */
async function hostWith(options: { at: Date; vllmConfig?: boolean; appliedHere?: () => Promise<{ rolloutId: string; runId: string }[]> }) {
  const home = await testdir();
  const { config } = requireConfig(
    loadConfig({
      env: {
        KLR_HOME: home,
        KLR_MODEL_PATH: join(home, "model"),
        KLR_GPU_MAINTENANCE_TZ: "UTC",
        ...(options.vllmConfig === false ? {} : { KLR_VLLM_CONFIG: join(home, "vllm.yaml") }),
      },
      homeDir: home,
    }),
  );
  const layout = layoutFor(config);
  let now = options.at;
  const context = {
    config,
    layout,
    now: () => now,
    production: { version: () => Promise.resolve("0.11.0") },
    probe: { queryGpus: () => Promise.resolve({ gpus: [], reservedKnown: true }) },
  };
  const evaluator = { context } as unknown as SpicaGPUAllocation;
  const published: unknown[] = [];
  const reports: { id: string; result: RolloutResult; reason: string }[] = [];
  const assignment: RolloutAssignment = {
    rolloutId: "ro-1",
    runId: "r-proven",
    fromHost: "gpu-a",
    promotion: PROMOTION,
    state: "assigned",
  };
  const step = createRolloutStep({
    evaluator,
    logger: pino({ level: "silent" }),
    audit: createAuditFeed({ dir: layout.auditDir, timeZone: "UTC" }),
    fleet: {
      publishFingerprint: (fingerprint) => {
        published.push(fingerprint);
        return Promise.resolve();
      },
      assignment: () => Promise.resolve(assignment),
      report: (id, result, reason) => {
        // as the fleet store answers: a host's later rollback is recorded once
        const again = result === "rolled_back" && reports.some((r) => r.id === id && r.result === "rolled_back");
        reports.push({ id, result, reason });
        return Promise.resolve(!again);
      },
      appliedHere: options.appliedHere ?? (() => Promise.resolve([])),
    },
  });
  return {
    step,
    layout,
    published,
    reports,
    setNow: (at: Date) => (now = at),
    audit: createAuditFeed({ dir: layout.auditDir, timeZone: "UTC" }),
  };
}

const outcome = (status: SettingsChangeOutcome["status"], reason: string, gate: string | null = null) =>
  ({ status, reason, gate, runId: "r-apply" }) as SettingsChangeOutcome;

describe("the daemon's rollout step", () => {
  it("publishes the fingerprint once a night and takes nothing while the window is closed", async () => {
    const h = await hostWith({ at: CLOSED });
    expect(await h.step.choice()).toBeNull();
    expect(await h.step.choice()).toBeNull();
    expect(h.published).toHaveLength(1);
    expect(h.published[0]).toMatchObject({ vllm_version: "0.11.0", whisper_size: "small" });
  });

  it("is skipped, saying why, without KLR_VLLM_CONFIG, which apply needs", async () => {
    const h = await hostWith({ at: OPEN, vllmConfig: false });
    expect(await h.step.choice()).toBeNull();
    expect(h.reports).toEqual([{ id: "ro-1", result: "skipped", reason: expect.stringContaining("KLR_VLLM_CONFIG is not set") }]);
  });

  it("copies the promotion as a proposal naming the rollout, applies it once a night, and reports the outcome", async () => {
    const h = await hostWith({ at: OPEN });
    const asked = await h.step.choice();
    expect(asked).toEqual({ kind: "apply", promotion: "r-proven", by: "rollout", rollout: "ro-1" });
    const copied = JSON.parse(await readFile(join(h.layout.promotionsDir, "r-proven.json"), "utf8")) as Record<string, unknown>;
    expect(copied).toMatchObject({ run_id: "r-proven", state: "proposed", rollout: { id: "ro-1", from_host: "gpu-a" } });
    expect(copied).not.toHaveProperty("state_reason");
    expect(await h.step.choice()).toBeNull();
    await h.step.done(asked!, outcome("rolled_back", "verification failed: TTFT p95"));
    expect(h.reports).toEqual([{ id: "ro-1", result: "rolled_back", reason: "verification failed: TTFT p95" }]);
    // another change (the API's, KLR_AUTO_APPLY's) is not reported to the rollout
    await h.step.done({ kind: "rollback", by: "api" }, outcome("applied", "x"));
    expect(h.reports).toHaveLength(1);
  });

  it("reports applied without a restart when production serves the promotion already (the proving host)", async () => {
    const h = await hostWith({ at: OPEN });
    await mkdir(dirname(h.layout.appliedFile), { recursive: true });
    await writeFile(
      h.layout.appliedFile,
      JSON.stringify({
        vllm_memory_util: 0.8,
        whisper_model_size: "small",
        run_id: "r-x",
        promotion_run_id: "r-proven",
        applied_at: OPEN,
        file: "h.yaml",
        previous: null,
      }),
    );
    expect(await h.step.choice()).toBeNull();
    expect(h.reports).toEqual([{ id: "ro-1", result: "applied", reason: "production serves promotion r-proven already" }]);
  });

  it("tries again a minute later when another host held the fleet's slot, else at the next night", async () => {
    const h = await hostWith({ at: OPEN });
    const asked = await h.step.choice();
    await h.step.done(asked!, outcome("refused", "refused by the fleet_slot gate: gpu-b holds it", "fleet_slot"));
    expect(h.reports[0]?.result).toBe("refused");
    expect(await h.step.choice()).toBeNull();
    h.setNow(new Date(OPEN.getTime() + 61_000));
    const again = await h.step.choice();
    expect(again).toMatchObject({ by: "rollout" });
    await h.step.done(again!, outcome("refused", "refused by the budget gate", "budget"));
    h.setNow(new Date(OPEN.getTime() + 3_600_000));
    expect(await h.step.choice()).toBeNull();
  });
});

describe("a promotion a rollout applied here that production went back from later", () => {
  it("is reported rolled_back once (the rollout pauses), with the rollback's reason and an audit line, at any hour", async () => {
    let appliedHere = [{ rolloutId: "ro-0", runId: "r-proven" }];
    const h = await hostWith({ at: CLOSED, appliedHere: () => Promise.resolve(appliedHere) });
    await mkdir(h.layout.promotionsDir, { recursive: true });
    const file = join(h.layout.promotionsDir, "r-proven.json");
    // applied and holding: nothing to tell
    await writeFile(file, JSON.stringify(PROMOTION));
    expect(await h.step.choice()).toBeNull();
    expect(h.reports).toEqual([]);
    const reason = "out of memory within 24 h of applying promotion r-proven (2026-12-07T04:00:00.000Z): rolled back";
    await writeFile(file, JSON.stringify({ ...PROMOTION, state: "rolled_back", state_reason: reason }));
    // looked at every 15 s, not at every poll
    h.setNow(new Date(CLOSED.getTime() + 5_000));
    expect(await h.step.choice()).toBeNull();
    expect(h.reports).toEqual([]);
    h.setNow(new Date(CLOSED.getTime() + 16_000));
    expect(await h.step.choice()).toBeNull();
    expect(h.reports).toEqual([{ id: "ro-0", result: "rolled_back", reason }]);
    expect(await h.audit.query({ event: "fleet_rollout_host" })).toEqual([
      expect.objectContaining({ run_id: "r-proven", rollout_id: "ro-0", result: "rolled_back", reason }),
    ]);
    // the fleet no longer lists it as applied here: not told again
    appliedHere = [];
    h.setNow(new Date(CLOSED.getTime() + 32_000));
    await h.step.choice();
    expect(h.reports).toHaveLength(1);
  });

  it("a database that cannot be read leaves the step working: the next check tells it", async () => {
    let away = true;
    const h = await hostWith({
      at: CLOSED,
      appliedHere: () =>
        away ? Promise.reject(new Error("connection refused")) : Promise.resolve([{ rolloutId: "ro-0", runId: "r-proven" }]),
    });
    await mkdir(h.layout.promotionsDir, { recursive: true });
    await writeFile(
      join(h.layout.promotionsDir, "r-proven.json"),
      JSON.stringify({ ...PROMOTION, state: "rolled_back", state_reason: "operator" }),
    );
    expect(await h.step.choice()).toBeNull();
    away = false;
    h.setNow(new Date(CLOSED.getTime() + 16_000));
    await h.step.choice();
    expect(h.reports).toEqual([{ id: "ro-0", result: "rolled_back", reason: "operator" }]);
  });
});

describe("rolloutResultOf", () => {
  it("skips a host the promotion does not fit, keeps a gate's refusal for later, and counts a fault as failed", () => {
    const refused = (code: string) => new GpuCanaryError(code, "m", { kind: "refused" });
    expect(rolloutResultOf(refused("PROMOTION_STALE")).result).toBe("skipped");
    expect(rolloutResultOf(refused("APPLY_CHANGES_WHISPER")).result).toBe("skipped");
    expect(rolloutResultOf(refused("FLEET_DB_UNREACHABLE")).result).toBe("refused");
    expect(rolloutResultOf(new GpuCanaryError("RESTORE_FAILED", "m", { kind: "fault" })).result).toBe("failed");
    expect(rolloutResultOf(new Error("bug"))).toEqual({ result: "failed", reason: "bug" });
    expect(rolloutResultOf(outcome("applied", "verified"))).toEqual({ result: "applied", reason: "verified" });
  });
});
