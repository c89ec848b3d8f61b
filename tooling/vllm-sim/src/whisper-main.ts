// A Whisper stand-in: `whisper <size>` registers a GPU footprint for its size on the simulated
// host (GPU_CANARY_SIM_HOST, CUDA_VISIBLE_DEVICES) and gives it back on SIGTERM. Footprints: the
// "Required VRAM" column of openai/whisper's README.
//
// Its memory moves as a loading model's does (SIM_WHISPER_RAMP_MS, default 300): it climbs from a
// quarter of its footprint while the weights load, peaks 15 % above it while it warms up, then
// gives that back and holds its footprint — the release that makes a vLLM profiling beside it
// abort (vllm-project/vllm#56830). It prints "steady at <ISO time>" once it holds.
// SIM_WHISPER_RAMP_MS=never: it never holds still (1 % more every 100 ms).
import { registerProcess, unregisterProcess } from "./host-state.ts";

export const WHISPER_VRAM_MIB: Record<string, number> = {
  tiny: 1024,
  base: 1024,
  small: 2048,
  medium: 5120,
  large: 10240,
  "large-v2": 10240,
  "large-v3": 10240,
  turbo: 6144,
};

const STEP_MS = 100;

const size = process.argv[2] ?? process.env.GPU_CANARY_WHISPER_SIZE ?? "small";
const footprint = WHISPER_VRAM_MIB[size];
const hostFile = process.env.GPU_CANARY_SIM_HOST;
const ramp = process.env.SIM_WHISPER_RAMP_MS ?? "300";
if (footprint === undefined || !hostFile || (ramp !== "never" && !(Number(ramp) >= 0))) {
  process.stderr.write(
    `whisper stand-in: unknown size ${size}, no GPU_CANARY_SIM_HOST, or SIM_WHISPER_RAMP_MS=${ramp} not a number of ms or never\n`,
  );
  process.exit(2);
}
process.stdout.on("error", () => undefined);
const gpu = Number((process.env.CUDA_VISIBLE_DEVICES ?? "0").split(",")[0] ?? 0);
// One write at a time, in order: the host file is what nvidia-smi reads.
let writes: Promise<unknown> = Promise.resolve();
const hold = (fraction: number) => {
  const mib = Math.round(footprint * fraction);
  writes = writes.then(() =>
    registerProcess(hostFile, { gpu_index: gpu, pid: process.pid, name: `whisper-server (${size})`, used_memory_mib: mib }),
  );
  return writes;
};

let timer: NodeJS.Timeout | undefined;
if (ramp === "never") {
  // A leak: 1 % more every step, so no two readings, however far apart, agree.
  let fraction = 1;
  await hold(fraction);
  timer = setInterval(() => void hold((fraction += 0.01)), STEP_MS);
} else {
  const total = Number(ramp);
  const started = Date.now();
  await hold(0.25);
  const step = async () => {
    const t = Date.now() - started;
    if (t >= total) {
      await hold(1);
      process.stdout.write(`whisper stand-in: ${size} steady at ${new Date().toISOString()} with ${footprint} MiB\n`);
      return;
    }
    // Loading in the first 80 % of the ramp (up to the warm-up peak), then the peak held.
    await hold(0.25 + 0.9 * Math.min(1, t / (0.8 * total)));
    timer = setTimeout(() => void step(), STEP_MS);
  };
  timer = setTimeout(() => void step(), Math.min(STEP_MS, total));
}
process.once("SIGTERM", () => {
  clearTimeout(timer);
  clearInterval(timer);
  void writes.then(() => unregisterProcess(hostFile, process.pid)).then(() => process.exit(0));
});
setInterval(() => undefined, 60_000);
