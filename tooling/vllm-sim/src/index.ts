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

export { PROMPT_TOKENS_PER_WORD, buildSimVllm, promptTokensOf } from "./vllm-server.ts";
export { freePort } from "./free-port.ts";
export { kvCacheTokensFor } from "./kv-capacity.ts";
export type { KvCapacityInput } from "./kv-capacity.ts";
export type { SimVllmOptions } from "./vllm-server.ts";

/** The simulated vLLM server executable, started with vLLM's flags (`--port`, `--model`, `--gpu-memory-utilization`, `--config FILE`). */
export const SIM_VLLM = join(import.meta.dirname, "..", "bin", "vllm");

export { defineUnit } from "./systemd-standin.ts";
export type { UnitDefinition } from "./systemd-standin.ts";

/** A folder with the systemctl, systemd-run and journalctl stand-ins: put it first in PATH, and SIM_SYSTEMD_DIR to a state folder. */
export const SYSTEMD_STANDINS = join(import.meta.dirname, "..", "bin", "systemd");

/** The Whisper stand-in: `whisper <size>` registers that size's footprint on the simulated host. */
export const SIM_WHISPER = join(import.meta.dirname, "..", "bin", "whisper");

/** The stand-in executable: point KLR_NVIDIA_SMI at it and GPU_CANARY_SIM_HOST at a host file. */
export const NVIDIA_SMI_STANDIN = join(import.meta.dirname, "..", "bin", "nvidia-smi");

export { LLAMA_31_8B, applySiteOptions, createSimSite, writeModelFolder } from "./sim-site.ts";
export type { SimSite, SimSiteOptions, SimTraffic } from "./sim-site.ts";
