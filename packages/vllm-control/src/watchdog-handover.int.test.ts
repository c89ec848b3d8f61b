import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeJsonAtomic } from "@gpu-canary/state-file";
import { testdir, until } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { armWatchdog, watchdogPidPath } from "./watchdog.ts";

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("a watchdog whose arm file the next run took over", () => {
  it("leaves without firing and without removing the next run's arm file", async () => {
    const dir = await testdir();
    const armFile = join(dir, "gpu_maintenance.watchdog.arm.json");
    const watchdog = await armWatchdog({
      runId: "run-1",
      deadline: new Date(Date.now() + 600_000),
      restore: {
        quiesce: "stop",
        manager: { kind: "command", stopCommand: "true", startCommand: "true" },
        vllmUrl: "http://127.0.0.1:1",
        port: 1,
        vllmProcess: "vllm",
        gpuIndex: 0,
        serveTimeoutMs: 1000,
      },
      armFile,
      reportPath: join(dir, "report.json"),
      useSystemdRun: false,
    });
    const pid = watchdog.pid ?? 0;
    await until(() => existsSync(watchdogPidPath(armFile)), "the watchdog's PID file");
    // run-1 ended without a disarm it could write; run-2 armed the same path before run-1's watchdog looked again.
    const next = { ...(JSON.parse(readFileSync(armFile, "utf8")) as Record<string, unknown>), run_id: "run-2" };
    await writeJsonAtomic(armFile, next, { mode: 0o600 });
    await until(() => !alive(pid), "run-1's watchdog to leave", { timeoutMs: 20_000 });
    expect((JSON.parse(readFileSync(armFile, "utf8")) as { run_id: string }).run_id).toBe("run-2");
    expect(existsSync(join(dir, "report.json"))).toBe(false);
  }, 60_000);
});
