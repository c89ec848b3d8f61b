import { join } from "node:path";

export {
  FAILURES,
  createHost,
  freeMib,
  h200,
  hostStateSchema,
  liveProcesses,
  readHost,
  registerProcess,
  unregisterProcess,
  updateHost,
  usedMib,
} from "./host-state.ts";
export type { HostState, SimGpu, SimProcess } from "./host-state.ts";
export { FAILURE_OUTPUT, answer as nvidiaSmiAnswer } from "./nvidia-smi-standin.ts";

export { buildSimVllm } from "./vllm-server.ts";
export type { SimVllmOptions } from "./vllm-server.ts";

/** The simulated vLLM server executable, started with vLLM's flags (`--port`, `--model`, `--gpu-memory-utilization`). */
export const SIM_VLLM = join(import.meta.dirname, "..", "bin", "vllm");

/** The stand-in executable: point KLR_NVIDIA_SMI at it and GPU_CANARY_SIM_HOST at a host file. */
export const NVIDIA_SMI_STANDIN = join(import.meta.dirname, "..", "bin", "nvidia-smi");
