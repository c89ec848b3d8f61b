import { describe, expect, it } from "vitest";
import { cli } from "./test-fixtures/cli.ts";

describe("the command line", () => {
  it("shows help with examples and the exit codes, exit 0", async () => {
    const result = await cli(["--help"], {});
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Examples:");
    expect(result.stdout).toContain("3 refused by a safety gate");
    for (const command of [
      "config",
      "window",
      "budget",
      "demo",
      "status",
      "doctor",
      "evaluate",
      "recover",
      "promotions",
      "observe",
      "tune",
      "gpus",
    ]) {
      const sub = await cli([command, "--help"], {});
      expect(sub.code).toBe(0);
      expect(sub.stdout).toContain(`$ gpu-canary ${command}`);
    }
    const reset = await cli(["budget", "reset", "--help"], {});
    expect(reset.stdout).toContain("$ gpu-canary budget reset --yes");
  });

  it("refuses a candidate with a key it does not have (exit 2), naming the key, before anything runs", async () => {
    const candidate = '{"vllm_memory_util": 0.8, "whisper_model_size": "small", "max_model_len": 4096}';
    for (const mode of ["predictive", "canary"]) {
      const result = await cli(["evaluate", "--mode", mode, "--candidate", candidate, "--json"], { KLR_HOME: "/nonexistent-home" });
      expect(result.code).toBe(2);
      expect(JSON.stringify(result.json().error)).toContain("max_model_len");
    }
  });

  it("exits 2 on an unknown command or option, without a stack trace", async () => {
    for (const argv of [["frobnicate"], ["window", "--nope"]]) {
      const result = await cli(argv, {});
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/error: unknown/);
      expect(result.stderr).not.toContain("    at ");
    }
  });
});
