import { readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";
import { QUIESCED_RUN_PHASES } from "../test-fixtures/phases.ts";

// Lines of a vLLM log: ordinary ones, then one failure reported by three workers and the engine.
const LOG = [
  "INFO 10-03 16:22:17 [gpu_worker.py:298] Available KV cache memory: 6.51 GiB",
  "INFO 10-03 16:22:17 [kv_cache_utils.py:864] GPU KV cache size: 42,656 tokens",
  "(VllmWorker rank=0 pid=1) ERROR 03-16 06:12:38 [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.",
  "(VllmWorker rank=1 pid=2) ERROR 03-16 06:12:38 [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.",
  "ERROR 03-16 06:12:38 [core.py:340] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests.",
].join("\n");

async function simSite() {
  const site = await createSimSite(await testdir(), { settings: { KLR_CANARY_MODE: "predictive" } });
  onTestFinished(() => site.cleanup());
  await site.startProduction();
  const run = (argv: string[]) => cli(argv, site.env, new Date().toISOString());
  const intents = (sub = "") => {
    try {
      return readdirSync(join(site.home, "out", "orchestration", "intents", sub)).filter((n) => n.endsWith(".json"));
    } catch {
      return [];
    }
  };
  return { site, run, intents };
}

describe("gpu-canary observe and tune", () => {
  it("observe prints one event per failure; --dry-run creates nothing; tune ranks and processes the intent", async () => {
    const { site, run, intents } = await simSite();
    const log = join(site.dir, "vllm.log");
    await writeFile(log, LOG);
    const dry = await run(["observe", "--from", log, "--dry-run", "--json"]);
    expect(dry.code).toBe(0);
    const events = dry.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events).toEqual([expect.objectContaining({ event: "oom_detected", kind: "oom_runtime", intent_id: null })]);
    expect(intents()).toEqual([]);
    // A line carrying a terminal escape (OSC: set the window title) is shown escaped, never sent to the terminal.
    await writeFile(
      log,
      `${LOG}\nERROR 03-16 06:13:00 [core.py:340] \u001b]0;pwned\u0007ValueError: No available memory for the cache blocks. Try increasing gpu_memory_utilization when initializing the engine.\n`,
    );
    const text = await run(["observe", "--from", log, "--dry-run"]);
    expect(text.stdout).not.toContain("\u001b");
    expect(text.stdout).toContain("\\u001b]0;pwned\\u0007");
    await writeFile(log, LOG);
    const real = await run(["observe", "--from", log, "--json"]);
    const intentId = (JSON.parse(real.stdout.trim()) as { intent_id: string }).intent_id;
    expect(intents()).toEqual([`${intentId}.json`]);
    // A dry run decides nothing: the intent stays pending for a real run (the daemon's).
    const dryTune = await run(["tune", "--dry-run", "--json"]);
    expect(dryTune.json()).toMatchObject({ state: "pending", status: "ranked" });
    expect(intents()).toEqual([`${intentId}.json`]);
    expect(intents("processed")).toEqual([]);
    const tuned = await run(["tune", "--json"]);
    expect(tuned.code).toBe(0);
    expect(tuned.json()).toMatchObject({ state: "processed", status: "ranked", current: { vllm_memory_util: 0.5 } });
    expect(intents("processed")).toEqual([`${intentId}.json`]);
    expect((await run(["tune"])).stdout).toBe("No pending intents.\n");
  }, 60_000);

  it("tune --intent takes a manual proposal from a file and refuses a malformed one (exit 2)", async () => {
    const { site, run, intents } = await simSite();
    const file = join(site.dir, "manual.json");
    await writeFile(
      file,
      JSON.stringify({
        kind: "manual",
        subsystem: "gpu_allocation",
        evidence: "operator",
        candidate: { vllm_memory_util: 0.7, whisper_model_size: "base" },
      }),
    );
    // A dry run of a file leaves no intent behind.
    const dry = await run(["tune", "--intent", file, "--dry-run", "--json"]);
    expect(dry.json()).toMatchObject({ state: "not saved", status: "ranked", intent: { id: "dry-run", kind: "manual" } });
    expect(intents()).toEqual([]);
    const tuned = await run(["tune", "--intent", file, "--json"]);
    expect(tuned.code).toBe(0);
    expect(tuned.json()).toMatchObject({ status: "ranked", chosen: { vllm_memory_util: 0.7, whisper_model_size: "base" } });
    await writeFile(file, JSON.stringify({ kind: "oom_disk", subsystem: "gpu_allocation", evidence: "x" }));
    const bad = await run(["tune", "--intent", file, "--json"]);
    expect(bad.code).toBe(2);
    expect(bad.json().error?.code).toBe("INTENT_INVALID");
    expect((await run(["observe"])).code).toBe(2);
  }, 60_000);

  it("tune started by cron (stderr not a terminal): its canary's steps as timestamped lines on stderr, the answer alone on stdout", async () => {
    const site = await createSimSite(await testdir());
    onTestFinished(() => site.cleanup());
    await site.startProduction();
    const file = join(site.dir, "manual.json");
    const proposal = { vllm_memory_util: 0.7, whisper_model_size: "small" };
    await writeFile(file, JSON.stringify({ kind: "manual", subsystem: "gpu_allocation", evidence: "operator", candidate: proposal }));
    const now = new Date();
    const tuned = await cli(["tune", "--intent", file, "--json"], site.env, now.toISOString(), { stderrIsTTY: false });
    expect(tuned.code).toBe(0);
    expect(tuned.json()).toMatchObject({ status: "promoted", chosen: proposal });
    const stamp = now.toISOString().replace(/\.\d+Z$/, "Z");
    const lines = tuned.stderr.trimEnd().split("\n");
    for (const line of lines) expect(line.startsWith(`${stamp} tune: `)).toBe(true);
    const phases = lines.map((l) => l.slice(stamp.length + 7).split(":")[0]).filter((p, i, all) => p !== all[i - 1]);
    expect(phases).toEqual([...QUIESCED_RUN_PHASES]);
    expect(lines[0]).toBe(`${stamp} tune: started: intent ${file}`);
    expect(lines.at(-1)).toBe(`${stamp} tune: finished: exit 0`);
  }, 120_000);
});
