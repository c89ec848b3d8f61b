import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { testdir, tsNodeArgs } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { VERSION, parseDaemonArgs } from "./args.ts";

function parse(argv: string[]) {
  let stdout = "";
  let stderr = "";
  const result = parseDaemonArgs(argv, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { result, stdout, stderr };
}

describe("gpu-canaryd's command line", () => {
  it("answers --help and --version, refuses anything else as a usage error, and runs with no arguments", () => {
    const help = parse(["--help"]);
    expect(help.result).toBe(0);
    expect(help.stdout).toMatch(/^Usage: gpu-canaryd/);
    expect(help.stdout).toContain("$ KLR_CANARY_MODE=predictive gpu-canaryd");
    expect(parse(["-V"])).toMatchObject({ result: 0, stdout: `${VERSION}\n` });
    // The package's own version, not a number written twice.
    expect(VERSION).toBe(
      (JSON.parse(readFileSync(join(import.meta.dirname, "..", "package.json"), "utf8")) as { version: string }).version,
    );
    const bad = parse(["--port", "80"]);
    expect(bad.result).toBe(2);
    expect(bad.stderr).toContain("unknown option '--port'");
    expect(parse(["start"]).result).toBe(2);
    expect(parse([]).result).toBe("run");
  });

  it("as a process, --help prints and exits 0 without starting a daemon: nothing is written to KLR_HOME", async () => {
    const home = await testdir();
    const bin = join(import.meta.dirname, "bin.ts");
    const run = spawnSync(process.execPath, tsNodeArgs(bin, ["--help"]), {
      env: { ...process.env, KLR_HOME: home, KLR_CANARY_MODE: "canary" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^Usage: gpu-canaryd/);
    expect(run.stderr).toBe("");
    expect(readdirSync(home)).toEqual([]);
    const version = spawnSync(process.execPath, tsNodeArgs(bin, ["--version"]), {
      env: { ...process.env, KLR_HOME: home, KLR_CANARY_MODE: "canary" },
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect(readdirSync(home)).toEqual([]);
  }, 90_000);
});
