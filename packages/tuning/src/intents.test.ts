import { existsSync } from "node:fs";
import { readdir, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { layoutFor } from "@gpu-canary/config";
import { manualClock, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { IntentError, createIntentStore, parseIntentInput } from "./intents.ts";

async function store() {
  const home = await testdir();
  const layout = layoutFor({ home, modelPath: join(home, "m"), daemonTokenFile: join(home, "t") });
  const clock = manualClock("2026-11-28T03:00:00Z");
  return {
    layout,
    clock,
    store: createIntentStore({ layout, subsystems: ["gpu_allocation"], now: clock.now, cooldownMs: 3600_000, maxAgeMs: 3 * 86_400_000 }),
  };
}

const oom = {
  kind: "oom_kv_cache" as const,
  subsystem: "gpu_allocation",
  evidence: "ValueError: No available memory for the cache blocks.",
};

describe("intents as files", () => {
  it("writes the intent format, merges a duplicate within the cooldown, queues it again after", async () => {
    const { store: s, clock, layout } = await store();
    const first = await s.create(oom);
    expect(first.merged).toBe(false);
    expect(first.intent).toMatchObject({ ...oom, created_at: "2026-11-28T03:00:00.000Z" });
    expect(first.intent.id).toMatch(/^i-20261128T030000-[0-9a-f]{6}$/);
    clock.advance(600_000);
    expect((await s.create(oom)).merged).toBe(true);
    expect(await readdir(layout.intentsDir)).toHaveLength(1);
    clock.advance(3600_000);
    expect((await s.create(oom)).merged).toBe(false);
    // A manual proposal is never merged away.
    expect((await s.create({ ...oom, kind: "manual", candidate: { vllm_memory_util: 0.7, whisper_model_size: "base" } })).merged).toBe(
      false,
    );
  });

  it("never merges an event into an intent from before production's settings last changed (an apply)", async () => {
    const { store: s, clock } = await store();
    const first = await s.create(oom);
    clock.advance(600_000);
    const appliedAt = clock.now();
    clock.advance(60_000);
    const after = await s.create(oom, { notBefore: appliedAt });
    expect(after.merged).toBe(false);
    expect(after.intent.id).not.toBe(first.intent.id);
    // Two events after the apply are one failure of the applied settings.
    expect((await s.create(oom, { notBefore: appliedAt })).intent.id).toBe(after.intent.id);
  });

  it("lets exactly one of two racing workers claim an intent, and finishes it with its outcome", async () => {
    const { store: s, layout } = await store();
    await s.create(oom);
    const [a, b] = await Promise.all([s.claim(), s.claim()]);
    expect([a, b].filter((c) => c !== null)).toHaveLength(1);
    const claimed = (a ?? b)!;
    expect(claimed.path.startsWith(layout.intentsProcessing)).toBe(true);
    const done = await s.finish(claimed, "processed", { status: "ranked", reason: "2 of 4 fit" });
    expect(done.startsWith(layout.intentsProcessed)).toBe(true);
    expect((await s.list("processed"))[0]?.intent.outcome).toMatchObject({ status: "ranked", reason: "2 of 4 fit" });
    expect(await s.claim()).toBeNull();
  });

  it("puts a deferred intent back, expires old ones to failed/, requeues what a crash left in processing/", async () => {
    const { store: s, clock, layout } = await store();
    const { intent } = await s.create(oom);
    const claimed = (await s.claim())!;
    await s.release(claimed);
    expect((await s.list("pending")).map((e) => e.intent.id)).toEqual([intent.id]);
    await s.claim();
    expect(await s.requeueAbandoned()).toBe(1);
    clock.advance(4 * 86_400_000);
    expect((await s.expire()).map((i) => i.id)).toEqual([intent.id]);
    expect((await s.list("failed"))[0]?.intent.outcome?.status).toBe("expired");
    expect(existsSync(join(layout.intentsDir, `${intent.id}.json`))).toBe(false);
  });

  it("moves a hand-written file that is not an intent to failed/ instead of dropping it", async () => {
    const { store: s, layout } = await store();
    await mkdir(layout.intentsDir, { recursive: true });
    await writeFile(join(layout.intentsDir, "bad.json"), "{not json");
    expect(await s.list("pending")).toEqual([]);
    expect(await readdir(layout.intentsFailed)).toEqual(["bad.json"]);
  });

  it("refuses malformed input naming the field, and subsystems outside KLR_SUBSYSTEMS", () => {
    expect(() => parseIntentInput({ ...oom, kind: "oom_disk" }, ["gpu_allocation"])).toThrow(/kind/);
    expect(() => parseIntentInput({ ...oom, extra: 1 }, ["gpu_allocation"])).toThrow(IntentError);
    expect(() => parseIntentInput({ ...oom, candidate: { vllm_memory_util: 2, whisper_model_size: "small" } }, ["gpu_allocation"])).toThrow(
      /candidate/,
    );
    expect(() =>
      parseIntentInput({ ...oom, candidate: { vllm_memory_util: 0.7, whisper_model_size: "small", max_model_len: 8192 } }, [
        "gpu_allocation",
      ]),
    ).toThrow(/candidate.*"max_model_len", which a candidate does not have/);
    expect(() => parseIntentInput({ ...oom, subsystem: "tts" }, ["gpu_allocation"])).toThrow(/KLR_SUBSYSTEMS/);
    expect(parseIntentInput(oom, ["gpu_allocation"])).toEqual(oom);
  });
});
