import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
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
      "lock",
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

  it("runs recover and the other commands with the shell's own lines in the shared env file, warning about each", async () => {
    const home = await testdir();
    await writeFile(join(home, ".kloros_env"), "alias ll='ls -l'\nPATH+=:/opt/bin\nKLR_CANARY_PORT=9011\n");
    for (const argv of [
      ["recover", "--json"],
      ["window", "--json"],
      ["lock", "status", "--json"],
    ]) {
      const result = await cli(argv, { KLR_HOME: home });
      expect(result.code).toBe(0);
      expect(result.stderr).toContain(`warning: ${join(home, ".kloros_env")}:1`);
      expect(result.stderr).toContain(`${join(home, ".kloros_env")}:2`);
    }
  });

  it("prints its package's version with --version", async () => {
    const result = await cli(["--version"], {});
    expect(result.code).toBe(0);
    const pkg = JSON.parse(await readFile(join(import.meta.dirname, "..", "package.json"), "utf8")) as { version: string };
    expect(result.stdout).toBe(`${pkg.version}\n`);
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
