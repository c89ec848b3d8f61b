import { execFileSync } from "node:child_process";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { createSimSite } from "./sim-site.ts";

describe("createSimSite's production commands", () => {
  it("stops production as `systemctl stop` does: a stop of a stopped production succeeds", async () => {
    const site = await createSimSite(await testdir(), { gpus: 1 });
    onTestFinished(() => site.cleanup());
    const stop = site.env.KLR_PRODUCTION_STOP_COMMAND ?? "";
    // Never started: nothing to stop, and no error (a quiesce after production's own crash).
    expect(() => execFileSync("sh", ["-c", stop], { stdio: "pipe" })).not.toThrow();
    await site.startProduction();
    const pid = await site.productionPid();
    expect(pid).not.toBeNull();
    await site.stopProduction();
    expect(() => process.kill(pid ?? 0, 0)).toThrow();
    expect(() => execFileSync("sh", ["-c", stop], { stdio: "pipe" })).not.toThrow();
  }, 60_000);
});
