import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { readHostSummary } from "./host-summary.ts";

const promotion = {
  run_id: "r-1",
  created_at: "2026-11-28T03:10:00.000Z",
  subsystem: "gpu_allocation",
  candidate: { vllm_memory_util: 0.8, whisper_model_size: "small" },
  path: null,
  whisper_verified: true,
  llm_latency_ms: 120,
  state: "applied",
};

describe("readHostSummary", () => {
  it("reads the promotions as their files hold them and applied.json, naming what it cannot read instead of guessing", async () => {
    const home = await testdir();
    const promotionsDir = join(home, "promotions");
    await mkdir(promotionsDir);
    await writeFile(join(promotionsDir, "r-1.json"), JSON.stringify(promotion));
    await writeFile(join(promotionsDir, "r-2.json"), "{ half a promo");
    const appliedFile = join(home, "applied.json");
    const summary = await readHostSummary({ promotionsDir, appliedFile });
    expect(summary.promotions).toEqual([expect.objectContaining({ run_id: "r-1", state: "applied" })]);
    expect(summary.promotions[0]).not.toHaveProperty("file");
    expect(summary.unreadable).toEqual([{ file: join(promotionsDir, "r-2.json"), reason: expect.any(String) }]);
    expect(summary).toMatchObject({ applied: null, appliedError: null });

    await writeFile(appliedFile, "not json");
    const broken = await readHostSummary({ promotionsDir, appliedFile });
    expect(broken.applied).toBeNull();
    expect(broken.appliedError).toContain("applied.json");

    const applied = {
      vllm_memory_util: 0.8,
      whisper_model_size: "small",
      promotion_run_id: "r-1",
      applied_at: "2026-11-28T03:20:00.000Z",
      file: "h.yaml",
      run_id: "a-1",
      previous: null,
    };
    await writeFile(appliedFile, JSON.stringify(applied));
    expect((await readHostSummary({ promotionsDir, appliedFile })).applied).toMatchObject({
      promotion_run_id: "r-1",
      vllm_memory_util: 0.8,
    });
  });
});
