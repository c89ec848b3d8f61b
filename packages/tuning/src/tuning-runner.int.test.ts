import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { createGpuLock } from "@gpu-canary/gpu-lock";
import { SpicaGPUAllocation } from "@gpu-canary/spica-evaluator";
import { testdir } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { createIntentStore } from "./intents.ts";
import { createTuningRunner, proposeCandidates, rank } from "./tuning-runner.ts";
import { createObserver, workIntent } from "./worker.ts";

describe("proposeCandidates and rank", () => {
  const current = { vllmMemoryUtil: 0.8, whisperModelSize: "small" as const };
  it("steps the way the failure asks, within the bounds, with a smaller Whisper as another way", () => {
    expect(proposeCandidates(current, "more", { min: 0.6, max: 0.9 })).toEqual([
      { vllmMemoryUtil: 0.82, whisperModelSize: "small" },
      { vllmMemoryUtil: 0.85, whisperModelSize: "small" },
      { vllmMemoryUtil: 0.88, whisperModelSize: "small" },
      { vllmMemoryUtil: 0.9, whisperModelSize: "small" },
      { vllmMemoryUtil: 0.8, whisperModelSize: "base" },
      { vllmMemoryUtil: 0.85, whisperModelSize: "base" },
    ]);
    expect(proposeCandidates(current, "less", { min: 0.75, max: 0.9 }).map((c) => c.vllmMemoryUtil)).toEqual([0.78, 0.75, 0.8, 0.75]);
    expect(proposeCandidates({ vllmMemoryUtil: 0.9, whisperModelSize: "tiny" }, "more", { min: 0.6, max: 0.9 })).toEqual([]);
  });
  it("ranks the fitting ones by KV capacity, then by headroom", () => {
    const s = (u: number, fits: boolean, kv: number, head: number) => ({
      candidate: { vllmMemoryUtil: u, whisperModelSize: "small" as const },
      fits,
      reason: "",
      kvTokens: kv,
      headroomBytes: head,
    });
    expect(
      rank([s(0.7, true, 100, 5), s(0.8, false, 900, 0), s(0.75, true, 200, 1), s(0.72, true, 200, 3)]).map(
        (x) => x.candidate.vllmMemoryUtil,
      ),
    ).toEqual([0.72, 0.75, 0.7]);
  });
});

async function site(settings: Record<string, string>) {
  const s = await createSimSite(await testdir(), { settings });
  onTestFinished(() => s.cleanup());
  await s.startProduction();
  const config = requireConfig(loadConfig({ env: s.env, homeDir: s.home })).config;
  const layout = layoutFor(config);
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
  const evaluator = new SpicaGPUAllocation({ config, env: { GPU_CANARY_SIM_HOST: s.hostFile }, audit, useSystemdRun: false });
  const store = createIntentStore({ layout, subsystems: config.subsystems });
  const runner = createTuningRunner({ config, evaluator, audit, promotionsDir: layout.promotionsDir });
  const observer = createObserver({ store, audit, subsystem: "gpu_allocation" });
  return { s, config, layout, audit, store, runner, observer };
}

describe("the tuning loop on the simulated host", () => {
  it("predictive mode: an OOM line becomes an intent, screened and ranked, the intent processed", async () => {
    const t = await site({ KLR_CANARY_MODE: "predictive" });
    const event = await t.observer.line(
      "ERROR 11-18 18:07:28 engine.py:366] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.",
    );
    expect(event).toMatchObject({ kind: "oom_kv_cache", merged: false });
    const claimed = (await t.store.claim())!;
    const { outcome, state } = await workIntent({ store: t.store, runner: t.runner }, claimed);
    expect(state).toBe("processed");
    // Production runs at 0.5 (vllm:cache_config_info): "more" steps up from there.
    expect(outcome?.current).toMatchObject({ candidate: { vllmMemoryUtil: 0.5 }, source: "production's vllm:cache_config_info" });
    expect(outcome?.status).toBe("ranked");
    expect(outcome?.chosen?.vllmMemoryUtil).toBeGreaterThan(0.5);
    const events = (await t.audit.query()).map((e) => e.event);
    expect(events).toEqual(["oom_detected", "intent_created", "tuning_decision"]);
  }, 60_000);

  it("canary mode on the spare GPU: the best candidate is canaried and promoted", async () => {
    const t = await site({ KLR_ALLOW_SPARE_GPU: "true" });
    await t.observer.line("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.");
    const claimed = (await t.store.claim())!;
    const { outcome, state } = await workIntent({ store: t.store, runner: t.runner }, claimed);
    expect(outcome?.status).toBe("promoted");
    expect(state).toBe("processed");
    expect(outcome?.chosen?.vllmMemoryUtil).toBeGreaterThanOrEqual(0.6);
    // A runtime OOM's canary carries long requests filling 90 % of the KV cache the memory model predicts, and held them.
    const load = outcome?.result?.measured?.load;
    const kvTokens = outcome?.result?.predicted?.kvTokens ?? 0;
    expect(load?.why).toContain(`of the predicted KV cache of ${kvTokens} tokens`);
    const asked = (load?.extra ?? []).reduce((sum, e) => sum + e.promptTokens + e.outputTokens, 0);
    expect(asked + (load?.concurrency ?? 0) * ((load?.promptTokens ?? 0) + (load?.outputTokens ?? 0))).toBeGreaterThanOrEqual(
      kvTokens * 0.9,
    );
    expect(outcome?.result?.measured).toMatchObject({ preemptions: 0, load: { failed: 0 } });
    const promotion = JSON.parse(readFileSync(outcome?.result?.promotionPath ?? "", "utf8"));
    expect(promotion).toMatchObject({ path: "spare" });
    const processed = await t.store.list("processed");
    expect(processed[0]?.intent.outcome).toMatchObject({ status: "promoted", promotion: outcome?.result?.promotionPath });
    expect(join(t.layout.promotionsDir)).toBeTruthy();
  }, 120_000);

  it("an intent refused because another run holds the GPU lock waits and is tried again, not closed", async () => {
    const t = await site({});
    const other = await createGpuLock({ path: t.layout.gpuLock, ttlSeconds: 60, owner: "another run" }).acquire({ waitSeconds: 0 });
    await t.observer.line("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.");
    const first = await workIntent({ store: t.store, runner: t.runner }, (await t.store.claim())!);
    expect(first.outcome).toMatchObject({ status: "deferred", result: { status: "refused", gate: "lock" } });
    expect(first.state).toBe("pending");
    expect(await t.store.list("processed")).toEqual([]);
    await other.release();
    const second = await workIntent({ store: t.store, runner: t.runner }, (await t.store.claim())!);
    expect(second.outcome?.status).toBe("promoted");
    expect(second.state).toBe("processed");
  }, 120_000);
});
