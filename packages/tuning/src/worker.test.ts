import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor } from "@gpu-canary/config";
import { manualClock, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createIntentStore } from "./intents.ts";
import { createObserver } from "./worker.ts";

// vllm/v1/worker/gpu_worker.py `compile_or_warm_up_model`'s account (vllm-project/vllm@35d5cda), whose
// suggested flag vLLM's CLI does not know (vllm-project/vllm#52600); then the sampler's failure (vllm-project/vllm#14452).
const ACCOUNT =
  "(EngineCore_DP0 pid=9577) DEBUG 02-03 04:44:01 [v1/worker/gpu_worker.py:598] Free memory on device (47.03/47.37 GiB) on startup. Desired GPU memory utilization is (0.9, 42.64 GiB). Actual usage is 15.27 GiB for weight, 1.4 GiB for peak activation, 0.03 GiB for non-torch memory, and 0.54 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory=22976439705` (21.4 GiB) to fit into requested memory, or `--kv-cache-memory=27692338176` (25.79 GiB) to fully utilize gpu memory. Current kv cache memory in use is 21.55 GiB.";
const SAMPLER_OOM =
  "(VllmWorker rank=0 pid=10948) ERROR 03-16 06:12:38 [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.";

describe("the observer's intents", () => {
  it("carry vLLM's memory account of the failed start as evidence, naming --kv-cache-memory-bytes", async () => {
    const home = await testdir();
    const layout = layoutFor({ home, modelPath: join(home, "m"), daemonTokenFile: join(home, "t") });
    const clock = manualClock("2026-11-28T03:00:00Z");
    const store = createIntentStore({ layout, subsystems: ["gpu_allocation"], now: clock.now });
    const audit = createAuditFeed({ dir: layout.auditDir, timeZone: "UTC", now: clock.now, fsync: false });
    const observer = createObserver({ store, audit, subsystem: "gpu_allocation", now: clock.now });
    expect(await observer.line(ACCOUNT)).toBeNull();
    clock.advance(15_000);
    const event = await observer.line(SAMPLER_OOM);
    expect(event).toMatchObject({ kind: "oom_runtime", merged: false });
    const file = JSON.parse(await readFile(join(layout.intentsDir, `${event?.intentId}.json`), "utf8")) as { evidence: string };
    expect(file.evidence).toContain(SAMPLER_OOM);
    expect(file.evidence).toContain("vLLM's memory account of that start:");
    expect(file.evidence).toContain("`--kv-cache-memory-bytes=22976439705` (21.4 GiB) to fit into requested memory");
    expect(file.evidence).not.toMatch(/--kv-cache-memory(?!-bytes)/);
  });

  it("an unreadable applied.json loses no event: it gets an intent of its own, saying why it was not merged", async () => {
    const home = await testdir();
    const layout = layoutFor({ home, modelPath: join(home, "m"), daemonTokenFile: join(home, "t") });
    const clock = manualClock("2026-11-28T03:00:00Z");
    const store = createIntentStore({ layout, subsystems: ["gpu_allocation"], now: clock.now });
    const audit = createAuditFeed({ dir: layout.auditDir, timeZone: "UTC", now: clock.now, fsync: false });
    let unreadable = false;
    const observer = createObserver({
      store,
      audit,
      subsystem: "gpu_allocation",
      now: clock.now,
      appliedAt: () => (unreadable ? Promise.reject(new Error("/h/.kloros/vllm/applied.json: is not valid JSON")) : Promise.resolve(null)),
    });
    const first = await observer.line(SAMPLER_OOM);
    expect(first).toMatchObject({ merged: false });
    expect(first).not.toHaveProperty("appliedUnknown");
    clock.advance(60_000);
    // within the cooldown, the same kind joins the first
    expect(await observer.line(SAMPLER_OOM)).toMatchObject({ merged: true, intentId: first?.intentId });
    unreadable = true;
    clock.advance(60_000);
    const alone = await observer.line(SAMPLER_OOM);
    expect(alone).toMatchObject({ merged: false, appliedUnknown: expect.stringContaining("applied.json") });
    expect(alone?.intentId).not.toBe(first?.intentId);
    expect((await store.list("pending")).map((e) => e.intent.id).sort()).toEqual([first?.intentId, alone?.intentId].sort());
  });
});
