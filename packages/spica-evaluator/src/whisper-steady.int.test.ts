import { existsSync } from "node:fs";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { describe, expect, it } from "vitest";
import { site } from "./test-fixtures/site.ts";

const good = { vllm_memory_util: 0.75, whisper_model_size: "small" };

describe("no vLLM starts beside a Whisper whose memory still moves", () => {
  const roomy = { KLR_GPU_MAINTENANCE_MAX_DOWNTIME: "300" };
  const candidate = { vllm_memory_util: 0.75, whisper_model_size: "medium" };
  const at = (e: { ts: string }) => Date.parse(e.ts);

  it("the canary and production's restart each start only once two readings of the new Whisper agree", async () => {
    // Whisper loads, peaks while it warms up and gives the peak back 2 s after each start; each vLLM profiles
    // for 0.5 s and, as vLLM does, aborts if memory is given back meanwhile (vllm-project/vllm#56830).
    const s = await site({ whisper: "small", whisperRampMs: 2000, settings: roomy });
    await s.startWhisper();
    const result = await s
      .evaluator({ whisperPollMs: 200 }, { SIM_STARTUP_DELAY_MS: "500", PRODUCTION_STARTUP_DELAY_MS: "500" })
      .runTest(candidate);
    expect(result.status).toBe("passed");
    const audit = await createAuditFeed({ dir: s.layout.auditDir, timeZone: s.timeZone }).query();
    const [there, back] = audit.filter((e) => e.event === "whisper_switched");
    const [, steadyThere, steadyBack] = await s.whisperSteadyTimes();
    for (const [switched, footprint] of [
      [there, 5120],
      [back, 2048],
    ] as const) {
      // The readings until two in a row agreed, the last two being Whisper's footprint.
      expect((switched?.steady_readings_mib as number[]).slice(-2)).toEqual([footprint, footprint]);
    }
    const started = audit.find((e) => e.event === "canary_started");
    expect(at(started ?? { ts: "" })).toBeGreaterThanOrEqual(steadyThere?.getTime() ?? NaN);
    // Production's restart comes after Whisper is back and steady.
    expect(at(back ?? { ts: "" })).toBeGreaterThanOrEqual(steadyBack?.getTime() ?? NaN);
    expect(audit.findIndex((e) => e.event === "production_restored")).toBeGreaterThan(audit.findIndex((e) => e === back));
  }, 180_000);

  it("a Whisper that never holds still: no canary, production restored and charged, WHISPER_NOT_STEADY naming the readings", async () => {
    const s = await site({ whisper: "small", whisperRampMs: "never", settings: { ...roomy, KLR_WHISPER_STEADY_TIMEOUT: "2" } });
    await s.startWhisper();
    const error: unknown = await s
      .evaluator({ whisperPollMs: 200 })
      .runTest(candidate)
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).toMatchObject({
      code: "WHISPER_NOT_STEADY",
      message: expect.stringMatching(/^Whisper \(medium\) did not hold its GPU memory steady within 2 s: nvidia-smi read \d+(, \d+)* MiB/),
    });
    const audit = await createAuditFeed({ dir: s.layout.auditDir, timeZone: s.timeZone }).query();
    const kinds = audit.map((e) => e.event);
    expect(kinds).not.toContain("canary_started");
    expect(kinds).toEqual(expect.arrayContaining(["production_stopped", "production_restored", "budget_charged", "run_finished"]));
    expect(audit.find((e) => e.event === "run_finished")).toMatchObject({ status: "error" });
    expect(await fetch(`${s.env.KLR_VLLM_URL}/health`).then((r) => r.ok)).toBe(true);
    expect(existsSync(s.layout.gpuLock)).toBe(false);
  }, 180_000);

  it("the run's worst case counts both switches and their steady waits: refused by a budget that only affords the rest", async () => {
    const s = await site({ whisper: "small", settings: { KLR_WHISPER_STEADY_TIMEOUT: "20" } });
    const pid = await s.productionPid();
    const result = await s.evaluator().runTest(candidate);
    expect(result).toMatchObject({ status: "refused", gate: "budget" });
    expect(result.validationReason).toContain("Whisper there and back 2 × (commands 5 s (default) + steady wait ≤ 20 s)");
    expect(await s.productionPid()).toBe(pid);
    // The same run without a Whisper switch fits the default budget.
    expect((await s.evaluator().runTest(good, { mode: "canary" })).status).toBe("passed");
  }, 180_000);
});
