import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "./test-fixtures/cli.ts";

describe("the command line", () => {
  it("shows help with examples and the exit codes, exit 0", async () => {
    const result = await cli(["--help"], {});
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("Examples:");
    expect(result.stdout).toContain("3 refused by a safety gate");
    for (const command of ["config", "window", "budget", "demo"]) {
      const sub = await cli([command, "--help"], {});
      expect(sub.code).toBe(0);
      expect(sub.stdout).toContain(`$ gpu-canary ${command}`);
    }
    const reset = await cli(["budget", "reset", "--help"], {});
    expect(reset.stdout).toContain("$ gpu-canary budget reset --yes");
  });

  it("exits 2 on an unknown command or option, without a stack trace", async () => {
    for (const argv of [["frobnicate"], ["window", "--nope"]]) {
      const result = await cli(argv, {});
      expect(result.code).toBe(2);
      expect(result.stderr).toMatch(/error: unknown/);
      expect(result.stderr).not.toContain("    at ");
    }
  });

  it("runs the demo to the end on its own temporary home, ignoring the caller's settings", async () => {
    const home = await testdir();
    const result = await cli(["demo"], { KLR_HOME: home, KLR_CANARY_MODE: "broken-value" });
    // The only error is the one step 6 provokes on purpose: the corrupt budget file.
    expect(result.stderr).toMatch(/^ {4}error: the downtime budget \S+gpu_budget_\d{8}\.json is not valid JSON/);
    expect(result.stderr.match(/error:/g)).toHaveLength(1);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("The demo finished");
    expect(result.stdout).toMatch(/4\. .*OPEN/s);
    expect(result.stdout).toContain("demo-d: refused");
  });
});
