import { existsSync, readFileSync, readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import type { Candidate } from "./candidate.ts";
import type { Fingerprint } from "./promotion-fingerprint.ts";
import { PromotionNotFoundError, listPromotions, promotionFile, readPromotion, setPromotionState, writePromotion } from "./promotions.ts";
import type { EvaluationResult } from "./result.ts";

const NOW = new Date("2026-12-07T02:10:00.000Z");
const LATER = new Date("2026-12-08T02:10:00.000Z");

const HOST: Fingerprint = {
  vllm_version: "0.11.0",
  gpu_name: "NVIDIA H100 80GB HBM3",
  gpu_total_mib: 81047,
  model_config_sha256: "a".repeat(64),
  whisper_size: "small",
  kv_cache_dtype: "auto",
  tuned_flags: { "max-num-seqs": "64" },
};

function passed(
  runId: string,
  candidate: Candidate = { vllmMemoryUtil: 0.75, whisperModelSize: "small" },
  latency = 41.5,
): EvaluationResult {
  return {
    runId,
    mode: "canary",
    status: "passed",
    validationPassed: true,
    validationReason: `passed under load (${runId})`,
    llmLatencyMs: latency,
    candidate,
    subsystem: "gpu_allocation",
    predicted: null,
    measured: null,
    gate: null,
    promotionPath: null,
    startedAt: NOW.toISOString(),
    finishedAt: NOW.toISOString(),
  };
}

const files = (dir: string) => readdirSync(dir).filter((n) => n.endsWith(".json"));
const json = (path: string) => JSON.parse(readFileSync(path, "utf8")) as Record<string, unknown>;

describe("writePromotion", () => {
  it("writes a proposed promotion with the fingerprint of the host its canary ran on", async () => {
    const dir = await testdir();
    const path = await writePromotion(dir, passed("r-1"), true, HOST, NOW);
    expect(path).toBe(promotionFile(dir, "r-1"));
    expect(json(path)).toMatchObject({
      run_id: "r-1",
      candidate: { vllm_memory_util: 0.75, whisper_model_size: "small" },
      state: "proposed",
      state_changed_at: NOW.toISOString(),
      fingerprint: HOST,
      passes: [],
    });
  });

  it("the same candidate passing again on the same host adds its pass to the proposal, no second file", async () => {
    const dir = await testdir();
    const first = await writePromotion(dir, passed("r-1"), true, HOST, NOW);
    // Unknown parts are not differences: production down at the second canary (version null) is the same host.
    const again = await writePromotion(dir, passed("r-2", undefined, 39), true, { ...HOST, vllm_version: null }, LATER);
    expect(again).toBe(first);
    expect(files(dir)).toEqual(["r-1.json"]);
    const promotion = await readPromotion(dir, "r-1");
    expect(promotion.passes).toEqual([
      { run_id: "r-2", created_at: LATER.toISOString(), llm_latency_ms: 39, validation_reason: "passed under load (r-2)" },
    ]);
    // the promotion's own evidence stays the first canary's
    expect(promotion).toMatchObject({ run_id: "r-1", created_at: NOW.toISOString(), llm_latency_ms: 41.5 });
  });

  it("writes a new promotion for another candidate, another host, or a promotion no longer proposed", async () => {
    const dir = await testdir();
    await writePromotion(dir, passed("r-1"), true, HOST, NOW);
    await writePromotion(dir, passed("r-2", { vllmMemoryUtil: 0.78, whisperModelSize: "small" }), true, HOST, NOW);
    await writePromotion(dir, passed("r-3", { vllmMemoryUtil: 0.75, whisperModelSize: "base" }), true, HOST, NOW);
    await writePromotion(dir, passed("r-4"), true, { ...HOST, vllm_version: "0.12.0" }, NOW);
    expect(files(dir)).toEqual(["r-1.json", "r-2.json", "r-3.json", "r-4.json"]);

    const applied = await testdir();
    await writePromotion(applied, passed("r-1"), true, HOST, NOW);
    await setPromotionState(applied, "r-1", "applied", "applied by gpu-canary apply", NOW);
    await writePromotion(applied, passed("r-2"), true, HOST, LATER);
    expect(files(applied)).toEqual(["r-1.json", "r-2.json"]);
    expect((await readPromotion(applied, "r-1")).passes).toEqual([]);
  });

  it("a promotion from before fingerprints matches no host: a new one is written", async () => {
    const dir = await testdir();
    await writeFile(promotionFile(dir, "r-old"), JSON.stringify(oldPromotion("r-old")));
    await writePromotion(dir, passed("r-new"), true, HOST, NOW);
    expect(files(dir)).toEqual(["r-new.json", "r-old.json"]);
  });
});

function oldPromotion(runId: string) {
  return {
    run_id: runId,
    created_at: "2026-11-30T02:00:00.000Z",
    subsystem: "gpu_allocation",
    candidate: { vllm_memory_util: 0.75, whisper_model_size: "small" },
    path: "quiesced",
    whisper_verified: true,
    llm_latency_ms: 40,
  };
}

describe("listPromotions and readPromotion", () => {
  it("a file from before states is proposed, with no passes and no fingerprint", async () => {
    const dir = await testdir();
    await writeFile(promotionFile(dir, "r-old"), JSON.stringify(oldPromotion("r-old")));
    const [listed] = (await listPromotions(dir)).promotions;
    expect(listed).toMatchObject({ run_id: "r-old", state: "proposed", passes: [] });
    expect(listed?.fingerprint).toBeUndefined();
    expect(await readPromotion(dir, "r-old")).toMatchObject({ state: "proposed" });
  });

  it("readPromotion: a missing one is PromotionNotFoundError naming the run id, an unreadable one fails closed", async () => {
    const dir = await testdir();
    const missing = readPromotion(dir, "r-nope");
    await expect(missing).rejects.toBeInstanceOf(PromotionNotFoundError);
    await expect(readPromotion(dir, "r-nope")).rejects.toThrow("r-nope");
    await writeFile(promotionFile(dir, "r-bad"), "{ truncated");
    await expect(readPromotion(dir, "r-bad")).rejects.toMatchObject({ code: "STATE_UNREADABLE", path: promotionFile(dir, "r-bad") });
  });
});

describe("setPromotionState", () => {
  it("moves the promotion, saying why and when, and keeps everything else", async () => {
    const dir = await testdir();
    await writePromotion(dir, passed("r-1"), true, HOST, NOW);
    const before = json(promotionFile(dir, "r-1"));
    const after = await setPromotionState(dir, "r-1", "rolled_back", "vLLM ran out of memory 3 h after the apply", LATER);
    expect(after).toMatchObject({
      state: "rolled_back",
      state_changed_at: LATER.toISOString(),
      state_reason: "vLLM ran out of memory 3 h after the apply",
    });
    expect(json(promotionFile(dir, "r-1"))).toEqual({
      ...before,
      state: "rolled_back",
      state_changed_at: LATER.toISOString(),
      state_reason: "vLLM ran out of memory 3 h after the apply",
    });
    expect(files(dir)).toEqual(["r-1.json"]);
  });

  it("works on a file from before states", async () => {
    const dir = await testdir();
    await writeFile(promotionFile(dir, "r-old"), JSON.stringify(oldPromotion("r-old")));
    await setPromotionState(dir, "r-old", "stale", "vLLM version 0.10.2 → 0.11.0", NOW);
    expect(json(promotionFile(dir, "r-old"))).toMatchObject({
      ...oldPromotion("r-old"),
      state: "stale",
      state_reason: "vLLM version 0.10.2 → 0.11.0",
    });
  });

  it("a missing promotion is a typed error naming the run id; an unreadable one fails closed and is left as it is", async () => {
    const dir = await testdir();
    const missing = setPromotionState(dir, "r-nope", "applied", "x", NOW);
    await expect(missing).rejects.toBeInstanceOf(PromotionNotFoundError);
    await expect(setPromotionState(dir, "r-nope", "applied", "x", NOW)).rejects.toMatchObject({
      code: "PROMOTION_NOT_FOUND",
      runId: "r-nope",
      message: expect.stringContaining("r-nope"),
    });
    expect(files(dir)).toEqual([]);
    const bad = promotionFile(dir, "r-bad");
    await writeFile(bad, '{"run_id": "r-bad"}');
    await expect(setPromotionState(dir, "r-bad", "applied", "x", NOW)).rejects.toMatchObject({ code: "STATE_UNREADABLE", path: bad });
    expect(readFileSync(bad, "utf8")).toBe('{"run_id": "r-bad"}');
  });

  it("a missing folder is a missing promotion too, and is not created", async () => {
    const dir = join(await testdir(), "promotions");
    await expect(setPromotionState(dir, "r-1", "applied", "x", NOW)).rejects.toBeInstanceOf(PromotionNotFoundError);
    expect(existsSync(dir)).toBe(false);
  });

  it("leaves no lock file behind in the promotions folder", async () => {
    const dir = await testdir();
    await writePromotion(dir, passed("r-1"), true, HOST, NOW);
    await writePromotion(dir, passed("r-2"), true, HOST, NOW);
    await setPromotionState(dir, "r-1", "applied", "x", NOW);
    expect(readdirSync(dir)).toEqual(["r-1.json"]);
  });
});
