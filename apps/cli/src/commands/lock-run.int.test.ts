import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { testdir, until } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { shippedArgs } from "../test-fixtures/shipped.ts";

/** Whether a PID runs (a zombie waiting for its reaper does not). */
const runs = (pid: number) => existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

describe("gpu-canary lock run as a process", () => {
  it("SIGKILLed, it takes its command along: nothing runs on a lock that is then free", async () => {
    const dir = await testdir();
    const pidFile = join(dir, "command.pid");
    const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
    const wrapper = spawn(process.execPath, shippedArgs(["lock", "run", "--", "sh", "-c", `echo $$ > ${pidFile}; exec sleep 60`]), {
      env: { ...clean, KLR_HOME: dir },
      stdio: "ignore",
    });
    onTestFinished(() => void wrapper.kill("SIGKILL"));
    const pid = await until(() => existsSync(pidFile) && Number(readFileSync(pidFile, "utf8")), "the command to start", {
      timeoutMs: 30_000,
    });
    onTestFinished(() => {
      if (runs(pid)) process.kill(pid, "SIGKILL");
    });
    expect(runs(pid)).toBe(true);
    wrapper.kill("SIGKILL");
    await until(() => !runs(pid), "the command to die with its wrapper", { timeoutMs: 5000 });
  }, 60_000);
});
