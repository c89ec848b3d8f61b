import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

const FINGERPRINT = {
  vllm_version: "0.11.0",
  gpu_name: "NVIDIA L40S",
  gpu_total_mib: 46068,
  model_config_sha256: "a".repeat(64),
  whisper_size: "small",
  kv_cache_dtype: "auto",
  tuned_flags: { "gpu-memory-utilization": "0.7" },
};

const promotion = (runId: string, createdAt: string, more: Record<string, unknown> = {}) => ({
  run_id: runId,
  created_at: createdAt,
  subsystem: "gpu_allocation",
  candidate: { vllm_memory_util: 0.75, whisper_model_size: "small" },
  path: "quiesced",
  whisper_verified: true,
  llm_latency_ms: 41.5,
  validation_reason: "passed",
  ...more,
});

/** An old promotion (no state, no fingerprint), one rolled back, one proposed that passed twice more. */
async function home() {
  const dir = await testdir();
  const promotions = join(dir, "out", "promotions");
  await mkdir(promotions, { recursive: true });
  await writeFile(join(promotions, "r-old.json"), JSON.stringify(promotion("r-old", "2026-11-30T02:00:00.000Z")));
  await writeFile(
    join(promotions, "r-bad.json"),
    JSON.stringify(
      promotion("r-bad", "2026-12-01T02:00:00.000Z", {
        state: "rolled_back",
        state_changed_at: "2026-12-02T03:00:00.000Z",
        state_reason: "vLLM ran out of memory 3 h after the apply",
        fingerprint: FINGERPRINT,
        passes: [],
      }),
    ),
  );
  const passes = [
    { run_id: "r-2", created_at: "2026-12-04T02:00:00.000Z", llm_latency_ms: 40, validation_reason: "passed" },
    { run_id: "r-3", created_at: "2026-12-05T02:00:00.000Z", llm_latency_ms: 39, validation_reason: "passed" },
  ];
  await writeFile(
    join(promotions, "r-1.json"),
    JSON.stringify(promotion("r-1", "2026-12-03T02:00:00.000Z", { state: "proposed", fingerprint: FINGERPRINT, passes })),
  );
  return { dir, passes };
}

describe("gpu-canary promotions list", () => {
  it("shows each promotion's state, why it left proposed, and how often it passed", async () => {
    const { dir } = await home();
    const result = await cli(["promotions", "list"], { KLR_HOME: dir });
    expect(result.code).toBe(0);
    const lines = result.stdout.trim().split("\n");
    expect(lines[0]).toMatch(
      /^2026-11-30T02:00:00.000Z {2}r-old {2}proposed {2}vllm_memory_util 0.75 {2}whisper small {2}quiesced {2}latency 41.5 ms {2}whisper verified {2}load: none recorded$/,
    );
    expect(lines[1]).toMatch(
      /^2026-12-01T02:00:00.000Z {2}r-bad {2}rolled_back \(vLLM ran out of memory 3 h after the apply\) {2}vllm_memory_util 0.75 /,
    );
    expect(lines[2]).toMatch(
      /^2026-12-03T02:00:00.000Z {2}r-1 {2}proposed {2}vllm_memory_util .* whisper verified {2}passed 3× {2}load: none recorded$/,
    );
  });

  it("--json gives every promotion its state, fingerprint and passes, those from before them too", async () => {
    const { dir, passes } = await home();
    const result = await cli(["promotions", "list", "--json"], { KLR_HOME: dir });
    expect(result.code).toBe(0);
    const { promotions } = result.json() as { promotions: Record<string, unknown>[] };
    expect(promotions.map((p) => [p.run_id, p.state])).toEqual([
      ["r-old", "proposed"],
      ["r-bad", "rolled_back"],
      ["r-1", "proposed"],
    ]);
    expect(promotions[0]).toMatchObject({ fingerprint: null, passes: [] });
    expect(promotions[1]).toMatchObject({ fingerprint: FINGERPRINT, state_reason: "vLLM ran out of memory 3 h after the apply" });
    expect(promotions[2]).toMatchObject({ fingerprint: FINGERPRINT, passes });
  });
});
