import { spawn, spawnSync } from "node:child_process";
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { SYSTEMD_STANDINS, defineUnit } from "./index.ts";

const tool = (name: string) => join(SYSTEMD_STANDINS, name);

function run(name: string, args: string[], dir: string, env: Record<string, string> = {}) {
  return spawnSync(tool(name), args, { env: { ...process.env, SIM_SYSTEMD_DIR: dir, ...env }, encoding: "utf8" });
}

describe("the systemd stand-ins", () => {
  it("start and stop a unit as a real process, and tell whether it is active", async () => {
    const dir = await testdir();
    defineUnit(dir, "vllm.service", { exec: ["sleep", "30"] });
    expect(run("systemctl", ["is-active", "vllm.service"], dir)).toMatchObject({ status: 3, stdout: "inactive\n" });
    expect(run("systemctl", ["start", "vllm.service"], dir).status).toBe(0);
    onTestFinished(() => void run("systemctl", ["stop", "vllm.service"], dir));
    expect(run("systemctl", ["is-active", "vllm.service"], dir)).toMatchObject({ status: 0, stdout: "active\n" });
    const pid = Number(run("systemctl", ["show", "-p", "MainPID", "--value", "vllm.service"], dir).stdout);
    expect(pid).toBeGreaterThan(0);
    expect(run("systemctl", ["stop", "vllm.service"], dir).status).toBe(0);
    expect(run("systemctl", ["is-active", "vllm.service"], dir).stdout).toBe("inactive\n");
    expect(run("systemctl", ["start", "nope.service"], dir)).toMatchObject({ status: 5, stderr: expect.stringContaining("not found") });
  }, 30_000);

  it("shows a unit's ExecStart= in systemd's own format, with and without --value", async () => {
    const dir = await testdir();
    defineUnit(dir, "vllm.service", { exec: ["/bin/sh", "-c", "sleep 30", "a b"] });
    const stopped =
      '{ path=/bin/sh ; argv[]=/bin/sh -c "sleep 30" "a b" ; ignore_errors=no ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }';
    expect(run("systemctl", ["show", "-p", "ExecStart", "vllm.service"], dir)).toMatchObject({
      status: 0,
      stdout: `ExecStart=${stopped}\n`,
    });
    expect(run("systemctl", ["show", "-p", "ExecStart", "--value", "vllm.service"], dir).stdout).toBe(`${stopped}\n`);
    expect(run("systemctl", ["start", "vllm.service"], dir).status).toBe(0);
    onTestFinished(() => void run("systemctl", ["stop", "vllm.service"], dir));
    const pid = Number(run("systemctl", ["show", "-p", "MainPID", "--value", "vllm.service"], dir).stdout);
    expect(run("systemctl", ["show", "vllm.service", "-p", "ExecStart", "--value"], dir).stdout).toMatch(
      new RegExp(
        `^\\{ path=/bin/sh ; argv\\[\\]=/bin/sh -c "sleep 30" "a b" ; ignore_errors=no ; start_time=\\[\\w{3} \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\] ; stop_time=\\[n/a\\] ; pid=${pid} ; code=\\(null\\) ; status=0/0 \\}\n$`,
      ),
    );
    // A command named without its folder shows the executable systemd found; a unit that is not there shows nothing.
    defineUnit(dir, "bare.service", { exec: ["sh", "-c", "true"] });
    expect(run("systemctl", ["show", "-p", "ExecStart", "--value", "bare.service"], dir).stdout).toMatch(
      /^\{ path=\/\S*\/sh ; argv\[\]=sh -c true ; /,
    );
    expect(run("systemctl", ["show", "-p", "ExecStart", "nope.service"], dir).stdout).toBe("ExecStart=\n");
  }, 30_000);

  it("runs a transient unit detached from the caller, with a runtime cap", async () => {
    const dir = await testdir();
    const result = run(
      "systemd-run",
      ["--unit", "cap-test", "--collect", "-p", "RuntimeMaxSec=1", "--setenv=GREETING=hi", "--", "sh", "-c", "echo $GREETING; sleep 30"],
      dir,
    );
    expect(result).toMatchObject({ status: 0, stdout: "Running as unit: cap-test.service\n" });
    await new Promise((r) => setTimeout(r, 2500));
    expect(run("systemctl", ["is-active", "cap-test"], dir).stdout).toBe("inactive\n");
    expect(readFileSync(join(dir, "cap-test.log"), "utf8")).toBe("hi\n");
  }, 30_000);

  it("keeps the user's manager apart: --user needs $XDG_RUNTIME_DIR, and its units are not the system's", async () => {
    const dir = await testdir();
    const env = { XDG_RUNTIME_DIR: dir };
    const noRuntimeDir: NodeJS.ProcessEnv = { ...process.env, SIM_SYSTEMD_DIR: dir };
    delete noRuntimeDir.XDG_RUNTIME_DIR;
    const refused = spawnSync(tool("systemd-run"), ["--user", "--unit", "u1", "--", "sleep", "30"], {
      env: noRuntimeDir,
      encoding: "utf8",
    });
    expect(refused).toMatchObject({ status: 1, stderr: expect.stringContaining("XDG_RUNTIME_DIR not defined") });
    expect(run("systemd-run", ["--user", "--unit", "u1", "--quiet", "--", "sh", "-c", "echo up; sleep 30"], dir, env).status).toBe(0);
    onTestFinished(() => void run("systemctl", ["--user", "stop", "u1"], dir, env));
    expect(run("systemctl", ["is-active", "u1"], dir).stdout).toBe("inactive\n");
    expect(run("systemctl", ["--user", "is-active", "u1"], dir, env).stdout).toBe("active\n");
    await new Promise((r) => setTimeout(r, 300));
    expect(run("journalctl", ["--user-unit", "u1", "-o", "cat"], dir).stdout).toBe("up\n");
    expect(run("journalctl", ["-u", "u1", "-o", "cat"], dir).stdout).toBe("");
    expect(run("systemctl", ["--user", "stop", "u1"], dir, env).status).toBe(0);
    expect(run("systemctl", ["--user", "is-active", "u1"], dir, env).stdout).toBe("inactive\n");
  }, 30_000);

  it("follows a unit's log and resumes from its cursor file", async () => {
    const dir = await testdir();
    const log = join(dir, "vllm.service.log");
    appendFileSync(log, "line 1\nline 2\n");
    const cursor = join(dir, "cursor");
    expect(run("journalctl", ["-u", "vllm.service", "-o", "cat", "--cursor-file", cursor], dir).stdout).toBe("line 1\nline 2\n");
    appendFileSync(log, "line 3\npartial");
    const child = spawn(tool("journalctl"), ["-u", "vllm.service", "-f", "-o", "cat", "--cursor-file", cursor], {
      env: { ...process.env, SIM_SYSTEMD_DIR: dir },
    });
    onTestFinished(() => void child.kill("SIGKILL"));
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    const deadline = Date.now() + 10_000;
    while (!out.includes("line 3") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    appendFileSync(log, " done\n");
    while (!out.includes("partial done") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(out).toBe("line 3\npartial done\n");
  }, 30_000);
});
