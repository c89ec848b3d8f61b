import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createGpuProbe } from "@gpu-canary/gpu-probe";
import { testdir } from "@gpu-canary/testing";
import { NVIDIA_SMI_STANDIN, SIM_WHISPER, createHost, h200 } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { runOperatorCommand } from "./shell.ts";
import { readingsAgree, switchWhisper } from "./whisper.ts";

/** A simulated host with the Whisper stand-in switched by commands; `ramp` is how its memory moves after a start. */
async function whisperHost(ramp: string) {
  const dir = await testdir();
  const hostFile = join(dir, "host.json");
  await createHost(hostFile, { gpus: [h200(0)] });
  const env = { GPU_CANARY_SIM_HOST: hostFile, SIM_WHISPER_RAMP_MS: ramp };
  const pidFile = join(dir, "whisper.pid");
  const log = join(dir, "whisper.log");
  onTestFinished(async () => {
    await runOperatorCommand(`kill -KILL "$(cat ${pidFile})" 2>/dev/null; true`, { timeoutMs: 5000 });
  });
  const deps = {
    stopCommand: `kill -TERM "$(cat ${pidFile})"; while kill -0 "$(cat ${pidFile})" 2>/dev/null; do sleep 0.05; done`,
    startCommand: `setsid ${SIM_WHISPER} "$GPU_CANARY_WHISPER_SIZE" >> ${log} 2>&1 < /dev/null & echo $! > ${pidFile}`,
    processMatch: "whisper",
    gpuIndex: 0,
    probe: createGpuProbe({ executable: NVIDIA_SMI_STANDIN, env }),
    env,
  };
  /** When the stand-in said it held its memory. */
  const steadyAt = () => new Date(/ steady at (\S+) /.exec(readFileSync(log, "utf8"))?.[1] ?? NaN);
  return { deps, steadyAt };
}

describe("readingsAgree", () => {
  it("takes a few MiB of allocator movement as steady, a loading step as not", () => {
    // 8 MiB at least: a tiny Whisper serving audio moves by PyTorch's 2 MiB blocks.
    expect(readingsAgree(1024, 1032)).toBe(true);
    expect(readingsAgree(1024, 1033)).toBe(false);
    // 0.5 % of a large Whisper: one 20 MiB segment more is still the same Whisper.
    expect(readingsAgree(10240, 10291)).toBe(true);
    expect(readingsAgree(10240, 10240 + 52)).toBe(false);
    // A quarter loaded against loaded.
    expect(readingsAgree(1280, 5120)).toBe(false);
  });
});

describe("switchWhisper waits until the new Whisper's memory is steady", () => {
  it("returns only after two readings agree, once the stand-in has loaded, peaked and settled", async () => {
    const { deps, steadyAt } = await whisperHost("2000");
    const switched = await switchWhisper(deps, "none", "medium", 30_000, { pollMs: 200 });
    const returnedAt = new Date();
    expect(switched.footprintMib).toBe(5120);
    const readings = switched.steady?.readingsMib ?? [];
    // It stopped at the first two readings that agreed (readingsAgree: a poll on a busy machine may catch
    // the last MiB of the stand-in's settling, 5133 then 5120), the last being its footprint: never
    // before the stand-in held its memory.
    const [before, last] = readings.slice(-2);
    expect(last).toBe(5120);
    expect(readingsAgree(before ?? 0, last ?? 0)).toBe(true);
    expect(returnedAt.getTime()).toBeGreaterThanOrEqual(steadyAt().getTime());
  }, 60_000);

  it("gives up at its timeout with WHISPER_NOT_STEADY, naming the readings", async () => {
    const { deps } = await whisperHost("never");
    const started = Date.now();
    const failed = switchWhisper(deps, "none", "small", 30_000, { timeoutMs: 3000, pollMs: 200 });
    await expect(failed).rejects.toMatchObject({
      code: "WHISPER_NOT_STEADY",
      message: expect.stringMatching(
        /^Whisper \(small\) did not hold its GPU memory steady within 3 s: nvidia-smi read \d+(, \d+)* MiB, 0\.2 s apart/,
      ),
      hint: expect.stringContaining("KLR_WHISPER_STEADY_TIMEOUT"),
    });
    expect(Date.now() - started).toBeLessThan(8000);
  }, 60_000);

  it("says so when no new Whisper shows at all", async () => {
    const { deps } = await whisperHost("300");
    await expect(
      switchWhisper({ ...deps, startCommand: "true" }, "none", "small", 30_000, { timeoutMs: 1000, pollMs: 200 }),
    ).rejects.toMatchObject({
      code: "WHISPER_NOT_STEADY",
      message: "no Whisper (small) showed in nvidia-smi on GPU 0 within 1 s of its start",
    });
  }, 60_000);
});
