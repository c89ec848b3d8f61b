import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { createGpuLock } from "@gpu-canary/gpu-lock";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { SIM_VLLM, liveProcesses, readHost, registerProcess } from "@gpu-canary/vllm-sim";
import { spawn } from "node:child_process";
import { Prober, outageOf } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { CandidateError } from "./candidate.ts";
import { exitCodeOfResult, resultJson } from "./result.ts";
import { site } from "./test-fixtures/site.ts";

const good = { vllm_memory_util: 0.75, whisper_model_size: "small" };

/** Production as a client sees it: the outage from the first failed completion to the first served after it. */
function watchProduction(url: string, model?: string) {
  const prober = new Prober(url, model);
  return { stop: async () => outageOf(await prober.stop(), Date.now()).seconds };
}

const events = async (home: string, tz = "UTC") =>
  (await createAuditFeed({ dir: join(home, "out", "orchestration", "epochs"), timeZone: tz }).query()).map((e) => e.event);

describe("predictive mode", () => {
  it("passes a candidate that fits, with the memory model's numbers and no GPU work", async () => {
    const s = await site();
    const before = await s.productionPid();
    const result = await s.evaluator().runTest(good, { mode: "predictive" });
    expect(result.status).toBe("passed");
    expect(result.llmLatencyMs).toBeNull();
    const json = resultJson(result);
    expect(json).toMatchObject({ mode: "predictive", validation_passed: true, measured: null });
    const predicted = json.predicted as Record<string, number>;
    // Llama-3.1-8B's exact weights from the index; vLLM asks 0.75 of the CUDA total (143771 − 623 MiB).
    expect(predicted.weights_bytes).toBe(16060522496);
    expect(predicted.requested_bytes).toBe(Math.ceil(0.75 * (143771 - 623) * 1024 ** 2));
    expect(predicted.kv_tokens).toBeGreaterThan(500_000);
    expect(result.validationReason).toMatch(/fits GPU 0: vLLM 104\.84 GiB leaves a KV cache of/);
    expect(await s.productionPid()).toBe(before);
    expect(JSON.parse(readFileSync(s.layout.vllmSeen, "utf8"))).toMatchObject({ version: "0.11.0", gpu_index: 0 });
    expect(await events(s.home)).toEqual(["run_finished"]);
  }, 60_000);

  it("fails a candidate outside the bounds naming the bound, and refuses malformed ones as usage errors", async () => {
    const s = await site({ production: false });
    const evaluator = s.evaluator();
    const high = await evaluator.runTest({ vllm_memory_util: 0.95, whisper_model_size: "small" }, { mode: "predictive" });
    expect(high).toMatchObject({ status: "failed", validationReason: "vllm_memory_util 0.95 is above the maximum 0.9" });
    expect(exitCodeOfResult(high)).toBe(1);
    for (const bad of [
      "{",
      "[]",
      { vllm_memory_util: "0.7", whisper_model_size: "small" },
      { vllm_memory_util: 1.5, whisper_model_size: "small" },
      { vllm_memory_util: 0.7, whisper_model_size: "huge" },
    ]) {
      await expect(evaluator.runTest(bad)).rejects.toBeInstanceOf(CandidateError);
    }
  }, 30_000);

  it("fails a candidate that would not find its memory free, with the numbers", async () => {
    const s = await site({ production: false });
    const hog = spawn("sleep", ["60"], { stdio: "ignore" });
    onTestFinished(() => void hog.kill("SIGKILL"));
    await registerProcess(s.hostFile, { gpu_index: 0, pid: hog.pid ?? 0, name: "python3 trainer.py", used_memory_mib: 60_000 });
    const result = await s.evaluator().runTest({ vllm_memory_util: 0.75, whisper_model_size: "small" }, { mode: "predictive" });
    expect(result.status).toBe("failed");
    expect(result.validationReason).toMatch(
      /pre-flight rejects it: does not fit GPU 0: vLLM asks for 104\.84 GiB .* would find [\d.]+ GiB free/,
    );
    // No version known (production down, nothing seen before): the newest accounting, said so.
    expect(result.validationReason).toContain("no vLLM version known");
  }, 30_000);

  it("says vLLM ignores the utilization when production sizes its KV cache in bytes, naming the flag vLLM accepts", async () => {
    // The name vLLM's own log suggests (vllm/v1/worker/gpu_worker.py), which its CLI does not know (vllm-project/vllm#52600).
    const s = await site({ production: false, settings: { KLR_VLLM_EXTRA_ARGS: "--kv-cache-memory=8589934592" } });
    const result = await s.evaluator().runTest(good, { mode: "predictive" });
    expect(result.validationReason).toContain(
      "KLR_VLLM_EXTRA_ARGS sizes the KV cache with --kv-cache-memory-bytes: vLLM then ignores --gpu-memory-utilization",
    );
    expect(result.validationReason).not.toMatch(/--kv-cache-memory(?!-bytes)/);
  }, 30_000);

  it("vLLM 0.9 run with VLLM_USE_V1=0 in production's environment is predicted with V0's accounting; without it, V1's", async () => {
    const s = await site({ production: false });
    await s.startProduction({ SIM_VERSION: "0.9.2", VLLM_USE_V1: "0" });
    const v0 = resultJson(await s.evaluator().runTest(good, { mode: "predictive" }));
    expect(v0.validation_reason).toMatch(/\(VLLM_USE_V1=0 \(production's process environment \(PID \d+\)\): the V0 engine's accounting\)$/);
    expect(v0.predicted).toMatchObject({ vllm_version: "0.9.2", vllm_engine: "V0" });
    // V0 checks no free memory at startup (that came with V1 in 0.9.1).
    expect((v0.predicted as { checks: { name: string }[] }).checks.map((c) => c.name)).not.toContain("startup_free_memory");
    // The same production without the variable: V1, another KV cache.
    await s.stopProduction();
    await s.startProduction({ SIM_VERSION: "0.9.2" });
    const v1 = resultJson(await s.evaluator().runTest(good, { mode: "predictive" }));
    expect(v1.validation_reason).not.toContain("VLLM_USE_V1");
    expect(v1.predicted).toMatchObject({ vllm_version: "0.9.2", vllm_engine: "V1" });
    expect((v1.predicted as { kv_tokens: number }).kv_tokens).not.toBe((v0.predicted as { kv_tokens: number }).kv_tokens);
  }, 60_000);

  it("KLR_VLLM_EXTRA_ENV's VLLM_USE_V1=0 selects V0 for 0.8–0.10, and is said to be ignored from 0.11", async () => {
    const at = async (version: string) => {
      const s = await site({ production: false, settings: { KLR_VLLM_VERSION: version, KLR_VLLM_EXTRA_ENV: "VLLM_USE_V1=0" } });
      return resultJson(await s.evaluator().runTest(good, { mode: "predictive" }));
    };
    const old = await at("0.10.1");
    expect(old.validation_reason).toContain("(VLLM_USE_V1=0 (KLR_VLLM_EXTRA_ENV): the V0 engine's accounting)");
    expect(old.predicted).toMatchObject({ vllm_engine: "V0" });
    const current = await at("0.11.0");
    expect(current.validation_reason).toContain(
      "(vLLM 0.11.0 has no V0 engine (removed in 0.11.0): VLLM_USE_V1=0 (KLR_VLLM_EXTRA_ENV) is ignored, V1 accounting)",
    );
    expect(current.predicted).toMatchObject({ vllm_engine: "V1" });
  }, 60_000);

  it("is an error naming the file when the model folder lacks config.json", async () => {
    const s = await site({ production: false });
    await rm(join(s.modelPath, "config.json"));
    const result = await s.evaluator().runTest(good, { mode: "predictive" });
    expect(result.status).toBe("error");
    expect(exitCodeOfResult(result)).toBe(4);
    expect(result.validationReason).toContain(`${join(s.modelPath, "config.json")} does not exist`);
  }, 30_000);
});

describe("canary mode on the simulated host", () => {
  it("quiesced: stops production, tests the canary, restores production, charges what a client saw", async () => {
    // Production and canary refuse requests that name no model, as vLLM 0.6 and 0.7 did.
    const s = await site({ requireModel: true });
    const watch = watchProduction(s.env.KLR_VLLM_URL ?? "", s.modelPath);
    await new Promise((r) => setTimeout(r, 300));
    const result = await s.evaluator({}, { SIM_REQUIRE_MODEL: "1" }).runTest(good);
    const outage = await watch.stop();
    expect(result.status).toBe("passed");
    expect(result.measured).toMatchObject({ path: "quiesced", errors: [], preemptions: 0 });
    // The load: a small fallback shape when production's /metrics had counted nothing yet, else the shape
    // of the prober's requests it had counted (one token each way: a busy machine); every request completed.
    const load = result.measured?.load;
    expect(load).toMatchObject({ concurrency: 2, failed: 0, stopped: 0 });
    expect([
      { promptTokens: 512, outputTokens: 128 },
      { promptTokens: 1, outputTokens: 1 },
    ]).toContainEqual({ promptTokens: load?.promptTokens, outputTokens: load?.outputTokens });
    expect(result.measured?.samples).toBe(result.measured?.load?.completed);
    expect(result.measured?.samples).toBeGreaterThanOrEqual(5);
    expect(result.llmLatencyMs).toBeGreaterThan(0);
    const budget = JSON.parse(readFileSync(s.layout.budgetFile(s.night()), "utf8"));
    expect(Math.abs(budget.seconds_used - outage)).toBeLessThan(0.5);
    expect(budget.seconds_used).toBeCloseTo(result.measured?.downtimeSeconds ?? 0, 3);
    const promotion = JSON.parse(readFileSync(result.promotionPath ?? "", "utf8"));
    // No Whisper runs on this host: nothing was seen, so nothing is claimed.
    expect(promotion).toMatchObject({ run_id: result.runId, candidate: good, path: "quiesced", whisper_verified: false });
    expect(await events(s.home)).toEqual([
      "lock_acquired",
      "production_stopped",
      "canary_started",
      "canary_tested",
      "canary_stopped",
      "production_restored",
      "budget_charged",
      "lock_released",
      "run_finished",
      "promotion_written",
    ]);
    expect(existsSync(s.layout.gpuLock)).toBe(false);
    expect(existsSync(join(s.layout.locksDir, "gpu_maintenance.watchdog.arm.json"))).toBe(false);
  }, 120_000);

  it("spare GPU: production untouched, nothing charged", async () => {
    const s = await site({ settings: { KLR_ALLOW_SPARE_GPU: "true", KLR_SPARE_GPU_ID: "1" } });
    const before = await s.productionPid();
    const watch = watchProduction(s.env.KLR_VLLM_URL ?? "");
    const result = await s.evaluator().runTest(good);
    const outage = await watch.stop();
    expect(result.status).toBe("passed");
    expect(result.measured?.path).toBe("spare");
    expect(await s.productionPid()).toBe(before);
    expect(outage).toBeLessThan(1);
    expect(existsSync(s.layout.maintenanceDir) ? readFileSync(s.layout.rateLimits, "utf8") : "").toContain(result.runId);
    expect((await events(s.home)).filter((e) => e.startsWith("production_") || e === "budget_charged")).toEqual([]);
  }, 120_000);

  it("a promotion carries the fingerprint of the host its canary ran on; the same candidate passing again adds a pass to it", async () => {
    const s = await site({
      settings: { KLR_ALLOW_SPARE_GPU: "true", KLR_SPARE_GPU_ID: "1", KLR_RATE_LIMIT_COOLDOWN_HOURS: "0", KLR_MAX_MODEL_LEN: "4096" },
    });
    const first = await s.evaluator().runTest(good);
    expect(first.status).toBe("passed");
    const promotion = JSON.parse(readFileSync(first.promotionPath ?? "", "utf8"));
    const digest = createHash("sha256")
      .update(readFileSync(join(s.modelPath, "config.json")))
      .digest("hex");
    expect(promotion).toMatchObject({
      state: "proposed",
      passes: [],
      fingerprint: {
        vllm_version: expect.any(String),
        gpu_name: expect.any(String),
        gpu_total_mib: expect.any(Number),
        model_config_sha256: digest,
        whisper_size: "small",
        kv_cache_dtype: "auto",
        tuned_flags: { "max-model-len": "4096" },
      },
    });
    const again = await s.evaluator().runTest(good);
    expect(again.status).toBe("passed");
    expect(again.promotionPath).toBe(first.promotionPath);
    expect(readdirSync(s.layout.promotionsDir).filter((n) => n.endsWith(".json"))).toHaveLength(1);
    expect(JSON.parse(readFileSync(first.promotionPath ?? "", "utf8")).passes).toEqual([
      expect.objectContaining({ run_id: again.runId, llm_latency_ms: again.llmLatencyMs, validation_reason: again.validationReason }),
    ]);
  }, 180_000);

  it("attached: tests a vLLM already serving the candidate on the canary port, and refuses one that serves something else", async () => {
    const s = await site();
    const start = (util: number) => {
      const child = spawn(SIM_VLLM, ["--port", String(s.canaryPort), "--model", s.modelPath, "--gpu-memory-utilization", String(util)], {
        env: { ...process.env, GPU_CANARY_SIM_HOST: s.hostFile, CUDA_VISIBLE_DEVICES: "1" },
        stdio: "ignore",
      });
      onTestFinished(() => void child.kill("SIGKILL"));
      return child;
    };
    const child = start(0.6);
    const ready = async () => {
      for (let i = 0; i < 300; i += 1) {
        if (
          await fetch(`http://127.0.0.1:${s.canaryPort}/health`).then(
            (r) => r.ok,
            () => false,
          )
        )
          return;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await ready();
    const before = await s.productionPid();
    const wrong = await s.evaluator().runTest(good);
    expect(wrong).toMatchObject({ status: "refused", gate: "canary_port" });
    expect(wrong.validationReason).toContain("runs gpu_memory_utilization 0.6, not the candidate's 0.75");
    // A refused run never counts against the rate limit.
    expect(existsSync(s.layout.rateLimits)).toBe(false);
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
    start(0.75);
    await ready();
    const result = await s.evaluator().runTest(good);
    expect(result.status).toBe("passed");
    expect(result.measured?.path).toBe("attached");
    expect(await s.productionPid()).toBe(before);
    expect(await fetch(`http://127.0.0.1:${s.canaryPort}/health`).then((r) => r.ok)).toBe(true);
  }, 120_000);

  it("refuses at each safety gate, naming it, with production untouched", async () => {
    const s = await site();
    const pid = await s.productionPid();
    const night = s.night();
    const refusedBy = async (gate: string, text: RegExp) => {
      const result = await s.evaluator().runTest(good);
      expect(result).toMatchObject({ status: "refused", gate });
      expect(result.validationReason).toMatch(text);
      expect(exitCodeOfResult(result)).toBe(3);
      expect(await s.productionPid()).toBe(pid);
      return result.validationReason ?? "";
    };
    // Budget: 40 s used of 60 cannot cover the default worst case of 55 s.
    await mkdir(s.layout.maintenanceDir, { recursive: true });
    await writeFile(s.layout.budgetFile(night), '{"seconds_used": 40}');
    const budgetReason = await refusedBy("budget", /worst case is 55 s of downtime \(quiesce 5 s \(default\) \+ canary timeout 30 s/);
    // Each number once, and the night by its date.
    expect(budgetReason.match(/55 s/g)).toHaveLength(1);
    expect(budgetReason).toContain(`the night of ${night.slice(0, 4)}-${night.slice(4, 6)}-${night.slice(6)}`);
    await rm(s.layout.budgetFile(night));
    // Rate limit: three runs in the last hours.
    const at = new Date(Date.now() - 3600_000).toISOString();
    await writeFile(
      s.layout.rateLimits,
      JSON.stringify({ subsystems: { gpu_allocation: { runs: [1, 2, 3].map((i) => ({ run_id: `r${i}`, at })) } } }),
    );
    await refusedBy("rate_limit", /./);
    await rm(s.layout.rateLimits);
    // The canary port held by something that is not a vLLM.
    const sockets = new Set<import("node:net").Socket>();
    const server = createServer((socket) => sockets.add(socket));
    await new Promise<void>((r) => server.listen(s.canaryPort, "127.0.0.1", r));
    await refusedBy("canary_port", new RegExp(`port ${s.canaryPort} is in use by PID ${process.pid} .*which is not a vLLM`));
    for (const socket of sockets) socket.destroy();
    await new Promise((r) => server.close(r));
    // The lock held by a live holder.
    const handle = await createGpuLock({ path: s.layout.gpuLock, ttlSeconds: 60, owner: "test" }).acquire({ waitSeconds: 0 });
    await refusedBy("lock", /held by PID \d+/);
    await handle.release();
    // A production that could not be started again is never stopped.
    const unstartable = await s.evaluator({ config: { ...s.config, productionStartCommand: undefined } }).runTest(good);
    expect(unstartable).toMatchObject({ status: "refused", gate: "production_manager" });
    expect(unstartable.validationReason).toMatch(
      /the command manager needs KLR_PRODUCTION_START_COMMAND: production could not be restarted/,
    );
    // Unknown subsystem.
    const result = await s.evaluator().runTest(good, { subsystem: "tts" });
    expect(result).toMatchObject({ status: "refused", gate: "subsystem" });
    expect(await events(s.home)).not.toContain("production_stopped");
    expect((await events(s.home)).filter((e) => e === "gate_refused")).toHaveLength(6);
  }, 120_000);

  it("refuses a canary whose vLLM command is not there before anything stops: no downtime, no rate-limit slot, no blame", async () => {
    const s = await site({ settings: { KLR_VLLM_COMMAND: "/nonexistent/vllm" } });
    const pid = await s.productionPid();
    const result = await s.evaluator().runTest(good);
    expect(result).toMatchObject({ status: "refused", gate: "canary_command" });
    expect(result.validationReason).toContain("/nonexistent/vllm, the first word of KLR_VLLM_COMMAND, is not an executable");
    expect(exitCodeOfResult(result)).toBe(3);
    expect(await s.productionPid()).toBe(pid);
    expect(existsSync(s.layout.rateLimits) ? readFileSync(s.layout.rateLimits, "utf8") : "").not.toContain(result.runId);
    expect(await events(s.home)).not.toContain("production_stopped");
  }, 60_000);

  it("refuses outside the window", async () => {
    const s = await site({ window: "closed" });
    const result = await s.evaluator().runTest(good);
    expect(result).toMatchObject({ status: "refused", gate: "window" });
    // A time in the maintenance zone, as people read it (not UTC's ISO form).
    expect(result.validationReason).toMatch(/is closed; it opens at \d{4}-\d\d-\d\d \d\d:\d\d [A-Z]/);
    expect(result.validationReason).not.toMatch(/T\d\d:\d\d:\d\d/);
  }, 60_000);

  it("a canary that dies of CUDA out-of-memory fails, and production is restored and charged", async () => {
    const s = await site();
    const result = await s.evaluator({}, { SIM_FAIL: "crash-mid-test", SIM_CRASH_AFTER: "2" }).runTest(good);
    expect(result.status).toBe("failed");
    expect(result.validationReason).toMatch(/the canary exited: torch\.OutOfMemoryError: CUDA out of memory/);
    expect(await fetch(`${s.env.KLR_VLLM_URL}/health`).then((r) => r.ok)).toBe(true);
    expect(await events(s.home)).toContain("budget_charged");
    expect(result.promotionPath).toBeNull();
  }, 120_000);

  it("a canary that never gets healthy is inconclusive at its timeout; production comes back", async () => {
    const s = await site({ settings: { KLR_CANARY_TIMEOUT: "3" } });
    const result = await s.evaluator({}, { SIM_FAIL: "health-hang" }).runTest(good);
    expect(result.status).toBe("inconclusive");
    expect(result.validationReason).toBe("the canary was not healthy before its timeout");
    expect(await fetch(`${s.env.KLR_VLLM_URL}/health`).then((r) => r.ok)).toBe(true);
  }, 120_000);

  it("production slow to return is waited for, and the overrun of the restore SLA is said", async () => {
    const s = await site({ settings: { KLR_RESTORE_SLA: "2" } });
    const result = await s.evaluator({}, { PRODUCTION_STARTUP_DELAY_MS: "2500" }).runTest(good);
    expect(result.status).toBe("passed");
    expect(result.validationReason).toMatch(/production took [\d.]+ s to serve again, over the 2 s restore SLA/);
    expect(result.measured?.downtimeSeconds).toBeGreaterThan(2.5);
  }, 120_000);

  it("sleep quiesce: production sleeps and wakes (same process), its residue is measured and counted next time", async () => {
    const s = await site({ settings: { KLR_QUIESCE: "sleep" } });
    const pid = await s.productionPid();
    const result = await s.evaluator().runTest(good);
    expect(result.status).toBe("passed");
    expect(await s.productionPid()).toBe(pid);
    expect(JSON.parse(readFileSync(s.layout.vllmSeen, "utf8"))).toMatchObject({ sleep_residue_mib: 1500 });
    expect(result.measured?.downtimeSeconds).toBeGreaterThan(0);
    // A residue this big leaves no room for 0.9 of the card beside it: refused before anything stops.
    await writeFile(s.layout.vllmSeen, JSON.stringify({ version: "0.11.0", seen_at: new Date().toISOString(), sleep_residue_mib: 20000 }));
    const big = await s.evaluator().runTest({ vllm_memory_util: 0.9, whisper_model_size: "small" });
    expect(big.status).toBe("failed");
    expect(big.validationReason).toMatch(/not beside the sleeping production's 19\.53 GiB \(measured; KLR_QUIESCE=sleep\)/);
  }, 120_000);

  const whispers = (hostFile: string) =>
    liveProcesses(readHost(hostFile))
      .filter((p) => p.name.startsWith("whisper"))
      .map((p) => p.name);

  // A run that switches Whisper counts both switches and their steady waits in its worst case: a budget that affords them.
  const roomy = { KLR_GPU_MAINTENANCE_MAX_DOWNTIME: "300" };

  it("without Whisper's commands a candidate's other size is not verified, though a Whisper runs (at the old size)", async () => {
    const s = await site({ whisper: "small" });
    await s.startWhisper();
    const config = { ...s.config, whisperStopCommand: undefined, whisperStartCommand: undefined };
    const result = await s.evaluator({ config }).runTest({ vllm_memory_util: 0.75, whisper_model_size: "base" });
    expect(result.status).toBe("passed");
    expect(JSON.parse(readFileSync(result.promotionPath ?? "", "utf8"))).toMatchObject({ whisper_verified: false });
    expect(whispers(s.hostFile)).toEqual(["whisper-server (small)"]);
  }, 120_000);

  it("Whisper at the candidate's size: nvidia-smi shows it and no other before the canary starts, each switch is audited", async () => {
    const s = await site({ whisper: "small", settings: roomy });
    await s.startWhisper();
    const result = await s.evaluator({ whisperPollMs: 200 }).runTest({ vllm_memory_util: 0.75, whisper_model_size: "base" });
    expect(result.status).toBe("passed");
    const audit = await createAuditFeed({ dir: s.layout.auditDir, timeZone: s.timeZone }).query();
    expect(audit.filter((e) => e.event === "whisper_switched")).toEqual([
      expect.objectContaining({
        from: "small",
        to: "base",
        seen: expect.stringMatching(/^whisper-server \(base\) \(PID \d+, 1024 MiB\)$/),
      }),
      expect.objectContaining({
        from: "base",
        to: "small",
        seen: expect.stringMatching(/^whisper-server \(small\) \(PID \d+, 2048 MiB\)$/),
      }),
    ]);
    const order = audit.map((e) => e.event);
    expect(order.indexOf("whisper_switched")).toBeLessThan(order.indexOf("canary_started"));
    expect(JSON.parse(readFileSync(result.promotionPath ?? "", "utf8"))).toMatchObject({ whisper_verified: true });
    expect(whispers(s.hostFile)).toEqual(["whisper-server (small)"]);
  }, 120_000);

  it("a Whisper stop command that misses the running Whisper: restored and failed, naming what nvidia-smi showed", async () => {
    const s = await site({ whisper: "small", settings: { ...roomy, KLR_WHISPER_STOP_COMMAND: "true" } });
    await s.startWhisper();
    const run = s.evaluator({ whisperPollMs: 200 }).runTest({ vllm_memory_util: 0.75, whisper_model_size: "base" });
    await expect(run).rejects.toThrow(/nvidia-smi shows the old Whisper still running: whisper-server \(small\) \(PID \d+, 2048 MiB\)/);
    const audit = await createAuditFeed({ dir: s.layout.auditDir, timeZone: s.timeZone }).query();
    expect(audit.map((e) => e.event)).not.toContain("canary_started");
    expect(audit.map((e) => e.event)).toEqual(expect.arrayContaining(["production_restored", "budget_charged", "run_finished"]));
    expect(await fetch(`${s.env.KLR_VLLM_URL}/health`).then((r) => r.ok)).toBe(true);
    expect(existsSync(s.layout.gpuLock)).toBe(false);
  }, 120_000);
});
