// A Whisper stand-in: `whisper <size>` registers a GPU footprint for its size on the simulated
// host (GPU_CANARY_SIM_HOST, CUDA_VISIBLE_DEVICES), growing in two steps as a model loads, and
// gives it back on SIGTERM. Footprints: the "Required VRAM" column of openai/whisper's README.
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

const size = process.argv[2] ?? process.env.GPU_CANARY_WHISPER_SIZE ?? "small";
const footprint = WHISPER_VRAM_MIB[size];
const hostFile = process.env.GPU_CANARY_SIM_HOST;
if (footprint === undefined || !hostFile) {
  process.stderr.write(`whisper stand-in: unknown size ${size} or no GPU_CANARY_SIM_HOST\n`);
  process.exit(2);
}
const gpu = Number((process.env.CUDA_VISIBLE_DEVICES ?? "0").split(",")[0] ?? 0);
const entry = (mib: number) => ({ gpu_index: gpu, pid: process.pid, name: `whisper-server (${size})`, used_memory_mib: mib });
await registerProcess(hostFile, entry(Math.round(footprint / 2)));
setTimeout(() => void registerProcess(hostFile, entry(footprint)), 300);
process.once("SIGTERM", () => {
  void unregisterProcess(hostFile, process.pid).then(() => process.exit(0));
});
setInterval(() => undefined, 60_000);
