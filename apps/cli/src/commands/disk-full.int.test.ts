import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, open, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { Prober, outageOf, testdir, until } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { shippedArgs } from "../test-fixtures/shipped.ts";
import { cli } from "../test-fixtures/cli.ts";

const run = promisify(execFile);
const candidate = JSON.stringify({ vllm_memory_util: 0.75, whisper_model_size: "small" });

/** A small tmpfs of its own, so that the disk can really fill (ENOSPC), not a simulated error. */
async function smallDisk(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  try {
    await run("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", dir]);
  } catch (error) {
    throw new Error("this test mounts a 16 MiB tmpfs to fill it, which needs root (as CI runs)", { cause: error });
  }
  onTestFinished(async () => {
    await run("umount", ["-l", dir]).catch(() => undefined);
  });
  return dir;
}

/** Write until the disk says ENOSPC; the file is the space to give back. */
async function fill(path: string): Promise<void> {
  const file = await open(path, "w");
  const chunk = Buffer.alloc(256 * 1024, 1);
  try {
    for (;;) await file.write(chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    await file.close().catch(() => undefined);
  }
}

describe("KLR_HOME's disk full in the middle of a quiesced run", () => {
  it("production restored by the run, a fault naming the file (exit 4), no second start by the watchdog, and recover charges the outage once space is back", async () => {
    const site = await createSimSite(await testdir());
    onTestFinished(() => site.cleanup());
    const home = join(await smallDisk(join(site.dir, "disk")), "home");
    const env: Record<string, string> = { ...site.env, KLR_HOME: home };
    await site.startProduction();
    const { config } = requireConfig(loadConfig({ env, homeDir: home }));
    const layout = layoutFor(config);
    const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone });
    const probe = new Prober(env.KLR_VLLM_URL ?? "");

    const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
    const child = spawn(process.execPath, shippedArgs(["evaluate", "--candidate", candidate, "--json"]), {
      env: { ...clean, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    onTestFinished(() => void child.kill("SIGKILL"));
    let stdout = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    await until(async () => (await audit.query()).some((e) => e.event === "production_stopped"), "production to be stopped", {
      timeoutMs: 60_000,
      pollMs: 20,
    });
    const filler = join(home, "filler");
    await fill(filler);

    expect(await exited).toBe(4);
    const exitedAt = Date.now();
    const error = (JSON.parse(stdout) as { error: { code: string; message: string } }).error;
    expect(error.code).not.toBe("INTERNAL");
    expect(error.message).toContain(home);
    expect(error.message).toMatch(/ENOSPC|no space/i);
    const pid = await site.productionPid();
    // The watchdog saw its armer die and production serving: it leaves, starting nothing, its arm file gone.
    const armFile = join(layout.locksDir, "gpu_maintenance.watchdog.arm.json");
    await until(() => !existsSync(armFile), "the watchdog to finish", { timeoutMs: 15_000 });
    expect(await site.productionPid()).toBe(pid);

    await rm(filler);
    const started = Date.now();
    const recovered = await cli(["recover", "--json"], env, new Date().toISOString());
    const tookSeconds = (Date.now() - started) / 1000;
    const outage = outageOf(await probe.stop(), started).seconds;
    expect(recovered.code).toBe(0);
    const outcome = recovered.json() as { action: string; charged_seconds: number };
    expect(outcome.action).toBe("recovered");
    // No waiting for a dead watchdog; serving time measured now (the run's own could not be written).
    expect(tookSeconds).toBeLessThan(10);
    expect(outcome.charged_seconds).toBeGreaterThanOrEqual(outage - 0.5);
    // Over-counted at most by the time between the run's end and the recovery, never by a guess.
    expect(outcome.charged_seconds).toBeLessThan(outage + (Date.now() - exitedAt) / 1000 + 1);
    expect(existsSync(layout.gpuLock)).toBe(false);
    expect(await site.productionPid()).toBe(pid);
  }, 180_000);
});
