import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Writable } from "node:stream";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import {
  type Candidate,
  type EvaluationResult,
  type Measured,
  type SettingsChangeOutcome,
  type SpicaGPUAllocation,
  hostFingerprint,
  setPromotionState,
  writePromotion,
} from "@gpu-canary/spica-evaluator";
import { testdir } from "@gpu-canary/testing";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { autoApplyChoice, changeChooser, giveBackBusyTry } from "./settings-changes.ts";

// 04:00 UTC: inside the default window (03:00–07:00) in UTC.
const NOW = new Date("2026-12-07T04:00:00.000Z");
const EARLIER = new Date("2026-12-06T04:00:00.000Z");

function passed(
  runId: string,
  util: number,
  m: Pick<Measured, "preemptions" | "kvCacheUsagePeak" | "ttftP95Ms" | "itlP95Ms">,
): EvaluationResult {
  const candidate: Candidate = { vllmMemoryUtil: util, whisperModelSize: "small" };
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
    measured: {
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
      ...m,
    },
    gate: null,
    promotionPath: null,
    startedAt: NOW.toISOString(),
    finishedAt: NOW.toISOString(),
  };
}

const calm = { preemptions: 0, kvCacheUsagePeak: 0.62, ttftP95Ms: 210, itlP95Ms: 22 };
const preempting = { preemptions: 2, kvCacheUsagePeak: 0.55, ttftP95Ms: 180, itlP95Ms: 20 };

/** An evaluator's context on a host running vLLM `version` on an L40S, auto-apply on, the window open. */
async function daemonOn(options: { version?: () => Promise<string> } = {}) {
  const home = await testdir();
  const { config } = requireConfig(
    loadConfig({
      env: {
        KLR_HOME: home,
        KLR_MODEL_PATH: join(home, "model"),
        KLR_AUTO_APPLY: "true",
        KLR_VLLM_CONFIG: join(home, "vllm.yaml"),
        KLR_GPU_MAINTENANCE_TZ: "UTC",
      },
      homeDir: home,
    }),
  );
  const layout = layoutFor(config);
  let asked = 0;
  const context = {
    config,
    layout,
    now: () => NOW,
    production: {
      version: () => {
        asked++;
        return options.version ? options.version() : Promise.resolve("0.11.0");
      },
    },
    probe: {
      queryGpus: () =>
        Promise.resolve({
          gpus: [{ index: 0, uuid: "GPU-a", name: "NVIDIA L40S", memoryTotalMib: 46068, memoryReservedMib: 0 }],
          reservedKnown: true,
        }),
    },
  };
  const evaluator = { context } as unknown as SpicaGPUAllocation;
  const fingerprint = {
    vllm_version: "0.11.0",
    gpu_name: "NVIDIA L40S",
    gpu_total_mib: 46068,
    model_config_sha256: null,
    whisper_size: "small",
    kv_cache_dtype: "auto",
    tuned_flags: {},
  };
  /** A promotion of `util` whose canary showed `m`, written at `at`, on this host unless `asIf` says otherwise. */
  const promote = async (runId: string, util: number, m: typeof calm, at: Date, asIf: { vllm_version?: string } = {}) => {
    await writePromotion(layout.promotionsDir, passed(runId, util, m), true, { ...fingerprint, ...asIf }, at);
  };
  return { evaluator, layout, promote, asked: () => asked };
}

describe("autoApplyChoice takes the best proposed promotion for this host by its canary's evidence", () => {
  it("the fingerprint the tests write is this host's", async () => {
    const d = await daemonOn();
    expect(await hostFingerprint(d.evaluator.context)).toMatchObject({
      vllm_version: "0.11.0",
      gpu_name: "NVIDIA L40S",
      whisper_size: "small",
    });
  });

  it("an earlier promotion whose canary did not preempt, over a newer one that did", async () => {
    const d = await daemonOn();
    await d.promote("r-calm", 0.78, calm, EARLIER);
    await d.promote("r-newer", 0.8, preempting, NOW);
    expect(await autoApplyChoice(d.evaluator, new Set())).toEqual({ kind: "apply", promotion: "r-calm", by: "auto" });
  });

  it("at equal evidence, the newer", async () => {
    const d = await daemonOn();
    await d.promote("r-old", 0.78, calm, EARLIER);
    await d.promote("r-new", 0.8, calm, NOW);
    expect(await autoApplyChoice(d.evaluator, new Set())).toMatchObject({ promotion: "r-new" });
  });

  it("once a night each: the best tried tonight is not tried again, nor the next in its place", async () => {
    const d = await daemonOn();
    await d.promote("r-calm", 0.78, calm, EARLIER);
    await d.promote("r-newer", 0.8, preempting, NOW);
    const tried = new Set<string>();
    expect(await autoApplyChoice(d.evaluator, tried)).toMatchObject({ promotion: "r-calm" });
    expect(await autoApplyChoice(d.evaluator, tried)).toBeNull();
  });

  it("a try refused because another host held the fleet's slot (or another run the lock) is given back; other refusals keep it", async () => {
    const d = await daemonOn();
    await d.promote("r-calm", 0.78, calm, EARLIER);
    const tried = new Set<string>();
    const asked = await autoApplyChoice(d.evaluator, tried);
    if (asked?.kind !== "apply") throw new Error("expected an apply");
    const refused = (gate: string): SettingsChangeOutcome => ({
      status: "refused",
      reason: `refused by ${gate}`,
      gate,
      runId: "r-try",
      from: null,
      to: 0.78,
      downtimeSeconds: null,
      measured: null,
      applied: null,
      historyFile: null,
    });
    expect(giveBackBusyTry(tried, asked, refused("budget"))).toBe(false);
    expect(await autoApplyChoice(d.evaluator, tried)).toBeNull();
    expect(giveBackBusyTry(tried, asked, refused("fleet_slot"))).toBe(true);
    expect(await autoApplyChoice(d.evaluator, tried)).toMatchObject({ promotion: "r-calm", by: "auto" });
    expect(giveBackBusyTry(tried, asked, refused("lock"))).toBe(true);
    // an operator's apply is theirs to ask again
    expect(giveBackBusyTry(tried, { kind: "apply", promotion: "r-calm", by: "api" }, refused("fleet_slot"))).toBe(false);
  });

  it("nothing when production already runs the best", async () => {
    const d = await daemonOn();
    await d.promote("r-calm", 0.78, calm, EARLIER);
    await d.promote("r-newer", 0.8, preempting, NOW);
    await mkdir(dirname(d.layout.appliedFile), { recursive: true });
    const entry = {
      vllm_memory_util: 0.78,
      whisper_model_size: "small",
      promotion_run_id: "r-calm",
      applied_at: EARLIER.toISOString(),
      file: "x",
    };
    await writeFile(d.layout.appliedFile, JSON.stringify({ ...entry, run_id: "r-apply", change: "apply", previous: null }));
    expect(await autoApplyChoice(d.evaluator, new Set())).toBeNull();
  });

  it("only proposed promotions: a rolled-back one is never the choice, however good its canary", async () => {
    const d = await daemonOn();
    await d.promote("r-calm", 0.78, calm, EARLIER);
    await d.promote("r-newer", 0.8, preempting, NOW);
    await setPromotionState(d.layout.promotionsDir, "r-calm", "rolled_back", "vLLM ran out of memory 2 h after the apply", NOW);
    expect(await autoApplyChoice(d.evaluator, new Set())).toMatchObject({ promotion: "r-newer" });
  });

  it("a better promotion proven on another host (another vLLM) is passed over; the host is asked once a night, not at every poll", async () => {
    const d = await daemonOn();
    await d.promote("r-elsewhere", 0.78, calm, NOW, { vllm_version: "0.10.2" });
    await d.promote("r-here", 0.8, preempting, EARLIER);
    const tried = new Set<string>();
    expect(await autoApplyChoice(d.evaluator, tried)).toMatchObject({ promotion: "r-here" });
    const asked = d.asked();
    expect(asked).toBeGreaterThan(0);
    expect(await autoApplyChoice(d.evaluator, tried)).toBeNull();
    expect(d.asked()).toBe(asked);
  });

  it("a host that cannot be fingerprinted is not known to differ: the best goes to apply, whose own check speaks", async () => {
    const d = await daemonOn({ version: () => Promise.reject(new Error("connection refused")) });
    // Production down and its last-seen version unreadable: hostFingerprint throws, naming the file.
    await mkdir(dirname(d.layout.vllmSeen), { recursive: true });
    await writeFile(d.layout.vllmSeen, "{ torn");
    await expect(hostFingerprint(d.evaluator.context)).rejects.toThrow();
    await d.promote("r-calm", 0.78, calm, EARLIER, { vllm_version: "0.10.2" });
    expect(await autoApplyChoice(d.evaluator, new Set())).toMatchObject({ promotion: "r-calm" });
  });
});

describe("changeChooser: a choice that fails never holds up the daemon's loop", () => {
  function capturedLogger() {
    const lines: { level: number; msg: string; err?: string }[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString("utf8")) as (typeof lines)[number]);
        done();
      },
    });
    return { logger: pino({ level: "info" }, stream), lines };
  }

  it("an unreadable applied.json: null at every poll (the intents go on), one warning and one fault naming the file, and a line when it is repaired", async () => {
    const d = await daemonOn();
    await d.promote("r-calm", 0.78, calm, EARLIER);
    await mkdir(dirname(d.layout.appliedFile), { recursive: true });
    await writeFile(d.layout.appliedFile, "{ torn");
    const { logger, lines } = capturedLogger();
    const faults: unknown[] = [];
    const tried = new Set<string>();
    const choose = changeChooser({
      choose: () => autoApplyChoice(d.evaluator, tried),
      logger,
      notifier: { send: (kind, fields) => void faults.push({ kind, ...fields }) },
    });
    await expect(autoApplyChoice(d.evaluator, new Set())).rejects.toThrow(d.layout.appliedFile);
    for (let poll = 0; poll < 5; poll += 1) expect(await choose()).toBeNull();
    expect(lines.filter((l) => l.level === 40)).toEqual([
      expect.objectContaining({
        msg: expect.stringContaining("no settings change could be chosen"),
        err: expect.stringContaining(d.layout.appliedFile),
      }),
    ]);
    expect(faults).toEqual([{ kind: "fault", reason: expect.stringContaining(d.layout.appliedFile) }]);

    await rm(d.layout.appliedFile);
    expect(await choose()).toEqual({ kind: "apply", promotion: "r-calm", by: "auto" });
    expect(lines.at(-1)).toMatchObject({ level: 30, msg: "settings changes are chosen again" });
    expect(faults).toHaveLength(1);
  });
});
