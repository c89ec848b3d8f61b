import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import {
  type Candidate,
  type EvaluationResult,
  type Measured,
  type SpicaGPUAllocation,
  hostFingerprint,
  parseCandidate,
  setPromotionState,
  writePromotion,
} from "@gpu-canary/spica-evaluator";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createTuningRunner } from "./tuning-runner.ts";

const NOW = new Date("2026-12-07T02:10:00.000Z");

const EARLIER = new Date("2026-12-06T02:10:00.000Z");

/** What a canary under load measured, as the evaluator records it; only the ranked numbers matter here. */
function measured(n: Pick<Measured, "preemptions" | "kvCacheUsagePeak" | "ttftP95Ms" | "itlP95Ms">): Measured {
  return {
    ttftP50Ms: null,
    itlP50Ms: null,
    e2eP50Ms: null,
    samples: 40,
    errors: [],
    productionBaseline: null,
    load: null,
    canaryServer: null,
    path: "quiesced",
    downtimeSeconds: 30,
    ...n,
  };
}

function result(runId: string, candidate: Candidate, m: Measured | null = null): EvaluationResult {
  return {
    runId,
    mode: "canary",
    status: "passed",
    validationPassed: true,
    validationReason: "passed under load",
    llmLatencyMs: 40,
    candidate,
    subsystem: "gpu_allocation",
    predicted: null,
    measured: m,
    gate: null,
    promotionPath: null,
    startedAt: NOW.toISOString(),
    finishedAt: NOW.toISOString(),
  };
}

/**
 * A runner over a stand-in evaluator: production runs at 0.7, every candidate fits with KV tokens
 * growing with its util (so the highest util ranks first), and a canary passes whatever it is given.
 */
async function runnerOn(version = "0.11.0", canaryMeasured: Measured | null = null, refusedBy: string | null = null) {
  const home = await testdir();
  const { config } = requireConfig(
    loadConfig({ env: { KLR_HOME: home, KLR_MODEL_PATH: join(home, "model"), KLR_CANARY_MODE: "canary" }, homeDir: home }),
  );
  const layout = layoutFor(config);
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const canaried: Candidate[] = [];
  const context = {
    config,
    layout,
    production: { version: () => Promise.resolve(version), servedUtilization: () => Promise.resolve(0.7) },
    probe: {
      queryGpus: () =>
        Promise.resolve({
          gpus: [{ index: 0, uuid: "GPU-a", name: "NVIDIA L40S", memoryTotalMib: 46068, memoryReservedMib: 0 }],
          reservedKnown: true,
        }),
    },
  };
  const evaluator = {
    context,
    predict: (c: Candidate) =>
      Promise.resolve({
        ok: true,
        reason: "fits",
        predicted: { kvTokens: Math.round(c.vllmMemoryUtil * 1000), freeAtStartBytes: 10, requestedBytes: 5 },
      }),
    runTest: async (input: unknown) => {
      const candidate = parseCandidate(input);
      canaried.push(candidate);
      if (refusedBy)
        return {
          ...result("r-canary", candidate),
          status: "refused",
          validationPassed: false,
          validationReason: "refused",
          gate: refusedBy,
        };
      const passed = result("r-canary", candidate, canaryMeasured);
      // As the evaluator does with a pass under load: a promotion with the evidence, fingerprinted here.
      if (canaryMeasured)
        passed.promotionPath = await writePromotion(layout.promotionsDir, passed, true, await hostFingerprint(context as never), NOW);
      return passed;
    },
  } as unknown as SpicaGPUAllocation;
  const runner = createTuningRunner({ config, evaluator, audit, promotionsDir: layout.promotionsDir });
  /** A promotion of `candidate` whose canary ran on this host (with `version`), rolled back afterwards. */
  const rolledBack = async (runId: string, candidate: Candidate, asIf: { vllm_version?: string } = {}) => {
    const fingerprint = { ...(await hostFingerprint(evaluator.context)), ...asIf };
    await writePromotion(layout.promotionsDir, result(runId, candidate), true, fingerprint, NOW);
    await setPromotionState(layout.promotionsDir, runId, "rolled_back", "vLLM ran out of memory 2 h after the apply", NOW);
  };
  /** An earlier promotion still proposed, its canary's evidence `m`, on this host unless `asIf` says otherwise. */
  const proposed = async (runId: string, candidate: Candidate, m: Measured, asIf: { vllm_version?: string } = {}) => {
    const fingerprint = { ...(await hostFingerprint(evaluator.context)), ...asIf };
    await writePromotion(layout.promotionsDir, result(runId, candidate, m), true, fingerprint, EARLIER);
  };
  return { runner, audit, layout, canaried, rolledBack, proposed };
}

const intent = { id: "i-1", kind: "oom_kv_cache" as const, subsystem: "gpu_allocation" };
const small = (u: number): Candidate => ({ vllmMemoryUtil: u, whisperModelSize: "small" });

describe("the tuning runner and rolled-back promotions", () => {
  it("without a rollback, the best fit (0.8) is canaried", async () => {
    const t = await runnerOn();
    const outcome = await t.runner.run(intent);
    expect(outcome.status).toBe("promoted");
    expect(t.canaried).toEqual([small(0.8)]);
    expect(outcome.rolledBack).toEqual([]);
  });

  it("does not propose a candidate rolled back on this host: the next best is canaried, and the decision says why", async () => {
    const t = await runnerOn();
    await t.rolledBack("r-bad", small(0.8));
    const outcome = await t.runner.run(intent);
    expect(t.canaried).toEqual([small(0.78)]);
    expect(outcome.chosen).toEqual(small(0.78));
    expect(outcome.rolledBack).toEqual([{ candidate: small(0.8), runId: "r-bad", reason: "vLLM ran out of memory 2 h after the apply" }]);
    expect(outcome.reason).toContain(
      "not proposed again, rolled back on this host: vllm_memory_util 0.8 with Whisper small (r-bad: vLLM ran out of memory 2 h after the apply)",
    );
    const [decision] = await t.audit.query({ event: "tuning_decision" });
    expect(decision).toMatchObject({
      rolled_back: [
        { vllm_memory_util: 0.8, whisper_model_size: "small", run_id: "r-bad", reason: "vLLM ran out of memory 2 h after the apply" },
      ],
    });
  });

  it("the same in a dry run: the ranking's choice skips it", async () => {
    const t = await runnerOn();
    await t.rolledBack("r-bad", small(0.8));
    const outcome = await t.runner.run(intent, { dryRun: true });
    expect(outcome).toMatchObject({ status: "ranked", chosen: small(0.78) });
    expect(t.canaried).toEqual([]);
  });

  it("a rollback on another host (another vLLM) does not rule the candidate out here", async () => {
    const t = await runnerOn("0.11.0");
    await t.rolledBack("r-elsewhere", small(0.8), { vllm_version: "0.10.2" });
    const outcome = await t.runner.run(intent);
    expect(t.canaried).toEqual([small(0.8)]);
    expect(outcome.rolledBack).toEqual([]);
  });

  it("an intent naming a rolled-back candidate is not canaried: no fit, saying why", async () => {
    const t = await runnerOn();
    await t.rolledBack("r-bad", small(0.8));
    const outcome = await t.runner.run({ ...intent, candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" } });
    expect(outcome.status).toBe("no_fit");
    expect(outcome.reason).toContain("was rolled back on this host");
    expect(outcome.reason).toContain("r-bad");
    expect(t.canaried).toEqual([]);
  });

  it("an unreadable promotion could be a rollback: the run fails closed, naming the file", async () => {
    const t = await runnerOn();
    await t.rolledBack("r-bad", small(0.8));
    const file = join(t.layout.promotionsDir, "r-torn.json");
    await writeFile(file, "{ torn");
    const outcome = await t.runner.run(intent);
    expect(outcome.status).toBe("error");
    expect(outcome.reason).toContain(file);
    expect(t.canaried).toEqual([]);
  });
});

describe("the tuning runner ranks this host's proposals by their canaries' evidence", () => {
  const calm = measured({ preemptions: 0, kvCacheUsagePeak: 0.62, ttftP95Ms: 210, itlP95Ms: 22 });
  const preempting = measured({ preemptions: 2, kvCacheUsagePeak: 0.55, ttftP95Ms: 180, itlP95Ms: 20 });

  it("a pass alone on this host is the proposal", async () => {
    const t = await runnerOn("0.11.0", calm);
    const outcome = await t.runner.run(intent);
    expect(outcome).toMatchObject({ status: "promoted", proposal: "r-canary" });
    expect(outcome.proposals.map((p) => p.runId)).toEqual(["r-canary"]);
  });

  it("a pass with worse evidence than an earlier proposal leaves that one the proposal, saying why, the ranking audited", async () => {
    const t = await runnerOn("0.11.0", preempting);
    await t.proposed("r-earlier", small(0.78), calm);
    const outcome = await t.runner.run(intent);
    expect(outcome.status).toBe("promoted");
    expect(t.canaried).toEqual([small(0.8)]);
    expect(outcome.proposal).toBe("r-earlier");
    expect(outcome.proposals.map((p) => p.runId)).toEqual(["r-earlier", "r-canary"]);
    expect(outcome.reason).toContain(
      "the proposal to apply stays r-earlier (vllm_memory_util 0.78 with Whisper small), first of 2 on this host by their canaries' evidence: fewer preemptions (0 vs 2)",
    );
    const [decision] = await t.audit.query({ event: "tuning_decision" });
    expect(decision).toMatchObject({
      proposal: "r-earlier",
      proposals: [
        { run_id: "r-earlier", vllm_memory_util: 0.78, preemptions: 0, kv_cache_usage_peak: 0.62, before_next_by: "preemptions" },
        { run_id: "r-canary", vllm_memory_util: 0.8, preemptions: 2, kv_cache_usage_peak: 0.55, before_next_by: null },
      ],
    });
  });

  it("a pass with better evidence becomes the proposal", async () => {
    const t = await runnerOn("0.11.0", calm);
    await t.proposed("r-earlier", small(0.78), measured({ preemptions: 0, kvCacheUsagePeak: 0.91, ttftP95Ms: 150, itlP95Ms: 15 }));
    const outcome = await t.runner.run(intent);
    expect(outcome.proposal).toBe("r-canary");
    expect(outcome.reason).toContain("the best of 2 proposals on this host by their canaries' evidence");
    const [decision] = await t.audit.query({ event: "tuning_decision" });
    expect(decision).toMatchObject({ proposals: [{ run_id: "r-canary", before_next_by: "kv_cache_usage_peak" }, { run_id: "r-earlier" }] });
  });

  it("a proposal whose canary ran on another host (another vLLM) is not ranked here, however good", async () => {
    const t = await runnerOn("0.11.0", preempting);
    await t.proposed("r-elsewhere", small(0.78), calm, { vllm_version: "0.10.2" });
    const outcome = await t.runner.run(intent);
    expect(outcome.proposal).toBe("r-canary");
    expect(outcome.proposals.map((p) => p.runId)).toEqual(["r-canary"]);
  });

  it("a rolled-back promotion is no proposal", async () => {
    const t = await runnerOn("0.11.0", preempting);
    await t.rolledBack("r-bad", small(0.7));
    const outcome = await t.runner.run(intent);
    expect(outcome.proposals.map((p) => p.runId)).toEqual(["r-canary"]);
  });

  it("no canary, no ranking of proposals (a dry run)", async () => {
    const t = await runnerOn("0.11.0", calm);
    await t.proposed("r-earlier", small(0.78), calm);
    const outcome = await t.runner.run(intent, { dryRun: true });
    expect(outcome).toMatchObject({ status: "ranked", proposal: null, proposals: [] });
  });
});

describe("the tuning runner refused by a gate", () => {
  it("defers the intent when another host holds the fleet's maintenance slot: it passes by itself", async () => {
    const t = await runnerOn("0.11.0", null, "fleet_slot");
    expect((await t.runner.run(intent)).status).toBe("deferred");
  });

  it("closes it as refused for a gate that does not pass by itself", async () => {
    const t = await runnerOn("0.11.0", null, "canary_command");
    expect((await t.runner.run(intent)).status).toBe("refused");
  });
});
