import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { createGpuLock } from "@gpu-canary/gpu-lock";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { InterruptedError } from "@gpu-canary/errors";
import { describe, expect, it } from "vitest";
import { site } from "./test-fixtures/site.ts";

const good = { vllm_memory_util: 0.75, whisper_model_size: "small" };

const events = async (home: string, tz = "UTC") =>
  (await createAuditFeed({ dir: join(home, "out", "orchestration", "epochs"), timeZone: tz }).query()).map((e) => e.event);

describe("signals at either end of a quiesced run", () => {
  /** An evaluator whose run gets SIGTERM the moment it prints a progress line starting with `at`. */
  const interruptedAt = (s: Awaited<ReturnType<typeof site>>, at: string) => {
    const controller = new AbortController();
    const evaluator = s.evaluator({
      signal: controller.signal,
      onProgress: (line) => {
        if (line.startsWith(at)) controller.abort("SIGTERM");
      },
    });
    return evaluator;
  };
  /** What a run threw (null when it returned): these runs are expected to end by an error. */
  const thrownBy = (run: Promise<unknown>): Promise<unknown> =>
    run.then(
      () => null,
      (e: unknown) => e,
    );
  const runFinished = async (s: Awaited<ReturnType<typeof site>>) => (await events(s.home)).filter((e) => e === "run_finished");

  it("a signal after the lock and the gates, before the quiesce: nothing stopped, nothing charged, the lock free, exit 143", async () => {
    const s = await site();
    const pid = await s.productionPid();
    const error: unknown = await thrownBy(interruptedAt(s, "gates passed").runTest(good));
    expect(error).toBeInstanceOf(InterruptedError);
    expect((error as InterruptedError).exitCode).toBe(143);
    expect(await s.productionPid()).toBe(pid);
    const kinds = await events(s.home);
    expect(kinds).toContain("lock_acquired");
    expect(kinds.filter((e) => e.startsWith("production_") || e === "canary_started" || e === "budget_charged")).toEqual([]);
    expect(await runFinished(s)).toHaveLength(1);
    expect(existsSync(s.layout.gpuLock)).toBe(false);
    expect(existsSync(s.layout.budgetFile(s.night()))).toBe(false);
    // The watchdog armed for the run was disarmed (its arm file gone): nothing fires later.
    expect(existsSync(join(s.layout.locksDir, "gpu_maintenance.watchdog.arm.json"))).toBe(false);
    expect(existsSync(s.layout.watchdogReport)).toBe(false);
  }, 120_000);

  it("a signal during the restore: production serves, the downtime is charged, the run is interrupted — never passed, no promotion", async () => {
    const s = await site();
    const error: unknown = await thrownBy(interruptedAt(s, "restoring production").runTest(good));
    expect(error).toBeInstanceOf(InterruptedError);
    expect(await fetch(`${s.env.KLR_VLLM_URL}/health`).then((r) => r.ok)).toBe(true);
    const kinds = await events(s.home);
    expect(kinds).toEqual(expect.arrayContaining(["production_restored", "budget_charged"]));
    expect(kinds).not.toContain("promotion_written");
    expect(await runFinished(s)).toHaveLength(1);
    expect(existsSync(s.layout.promotionsDir) ? readdirSync(s.layout.promotionsDir) : []).toEqual([]);
    expect(existsSync(s.layout.gpuLock)).toBe(false);
  }, 120_000);

  it("a forced release of the lock during the restore: the evicted run still charges its outage", async () => {
    const s = await site();
    const evaluator = s.evaluator({
      onProgress: (line) => {
        if (line.startsWith("restoring production"))
          void createGpuLock({ path: s.layout.gpuLock, ttlSeconds: 60, owner: "operator" }).forceRelease("test: the operator forces it");
      },
    });
    const error: unknown = await thrownBy(evaluator.runTest(good));
    expect(error).toMatchObject({ code: "LOCK_LOST" });
    expect(await fetch(`${s.env.KLR_VLLM_URL}/health`).then((r) => r.ok)).toBe(true);
    const budget = JSON.parse(readFileSync(s.layout.budgetFile(s.night()), "utf8")) as { seconds_used: number; charges: unknown[] };
    expect(budget.charges).toHaveLength(1);
    expect(budget.seconds_used).toBeGreaterThan(0);
    expect(await runFinished(s)).toHaveLength(1);
  }, 120_000);
});
