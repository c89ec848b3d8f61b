// The simulated vLLM as a process, started like vLLM's OpenAI server:
//   vllm --port 9011 --model /models/llm/current --gpu-memory-utilization 0.75 [--served-model-name N] [--max-model-len L]
// or with vLLM's own config file (`--config FILE`, YAML, since vLLM 0.6): its keys, dash or underscore spelled, are flags
// the command line did not give (the command line wins); a file that cannot be read as a YAML mapping exits 1 naming it.
// Knobs (environment): GPU_CANARY_SIM_HOST (host file to take GPU memory from), CUDA_VISIBLE_DEVICES (GPU index),
// SIM_STARTUP_DELAY_MS, SIM_TOKEN_LATENCY_MS, SIM_VERSION, SIM_REQUIRE_MODEL (1: refuse requests naming no model, as before 0.8), SIM_SLEEP_RESIDUE_MIB, SIM_PROCESS_NAME,
// SIM_STARTUP_DELAY_MS is also its profiling window: another process releasing GPU memory meanwhile aborts it, as vLLM does (none without a delay).
// SIM_FAIL (comma list: health-hang, engine-dead, completion-hang, drop-mid-stream, crash-mid-test:
// dies with PyTorch's CUDA out-of-memory text after SIM_CRASH_AFTER completions, default 2).
// Under load (README "Memory under load"): SIM_KV_CACHE_TOKENS (the KV capacity; default derived from
// the host file's GPU, --gpu-memory-utilization and the model folder's config.json by kvCacheTokensFor),
// SIM_LOAD_SLOWDOWN (k in token latency × (1 + k × (scheduled − 1)), default 0.02), SIM_PREFILL_MS_PER_1K,
// SIM_EOS_AFTER_TOKENS (the model's own answer length; ignore_eos overrides), SIM_OOM_AT_USAGE (a KV usage
// 0…1 past which the process dies with PyTorch's CUDA out-of-memory text).
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import { readHost, registerProcess, unregisterProcess, freeMib, liveProcesses } from "./host-state.ts";
import { kvCacheTokensFor } from "./kv-capacity.ts";
import { buildSimVllm } from "./vllm-server.ts";

const flags = {
  port: { type: "string" },
  host: { type: "string" },
  model: { type: "string" },
  "served-model-name": { type: "string" },
  "gpu-memory-utilization": { type: "string" },
  "max-model-len": { type: "string" },
  "max-num-seqs": { type: "string" },
  "max-num-batched-tokens": { type: "string" },
  "kv-cache-dtype": { type: "string" },
  "enable-sleep-mode": { type: "boolean" },
  "enforce-eager": { type: "boolean" },
  version: { type: "boolean" },
  config: { type: "string" },
} as const;
const { values: given } = parseArgs({ options: flags, strict: false });

/**
 * vLLM's `--config FILE`: a YAML mapping of long argument names (dashes or underscores) to values, taken
 * for the flags the command line did not give. A file that cannot be read as a mapping ends the start.
 */
function fromConfigFile(file: string): Record<string, string | boolean> {
  const refuse = (why: string): never => {
    process.stderr.write(`ValueError: Unable to read the config file at ${file}: ${why}\n`);
    process.exit(1);
  };
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    refuse(error instanceof Error && "code" in error && error.code === "ENOENT" ? "no such file" : String(error));
  }
  let config: unknown;
  try {
    config = parseYaml(text);
  } catch (error) {
    refuse(`not YAML (${error instanceof Error ? (error.message.split("\n")[0] ?? "") : String(error)})`);
  }
  if (config === null || typeof config !== "object" || Array.isArray(config)) refuse("not a YAML mapping of argument names to values");
  const taken: Record<string, string | boolean> = {};
  for (const [key, raw] of Object.entries(config as Record<string, unknown>)) {
    const name = key.replace(/_/g, "-");
    if (!(name in flags) || name === "config") continue;
    // A list (served-model-name takes several) gives its first value.
    const value: unknown = Array.isArray(raw) ? raw[0] : raw;
    if (typeof value !== "string" && typeof value !== "number" && typeof value !== "boolean") continue;
    if (flags[name as keyof typeof flags].type === "boolean") {
      if (value === true || value === "true") taken[name] = true;
    } else taken[name] = String(value);
  }
  return taken;
}

const fileValues = typeof given.config === "string" ? fromConfigFile(given.config) : {};
const values: Record<string, string | boolean | undefined> = {
  port: "8000",
  host: "127.0.0.1",
  "gpu-memory-utilization": "0.9",
  ...fileValues,
};
for (const [name, value] of Object.entries(given)) if (value !== undefined) values[name] = value;

const env = process.env;
// `vllm --version` prints the version alone and exits, as vLLM's CLI does.
if (values.version === true) {
  process.stdout.write(`${env.SIM_VERSION ?? "0.11.0"}\n`);
  process.exit(0);
}
// A parent that died closes our pipes: a log line must not crash the shutdown.
process.stdout.on("error", () => undefined);
process.stderr.on("error", () => undefined);
// vLLM's own line format: `INFO 09-03 16:28:10 [api_server.py:1882] …`, local time, no year (vllm-project/vllm#24162).
const stamp = new Intl.DateTimeFormat("en-GB", {
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
const vllmTime = (date: Date) => {
  const part = (type: Intl.DateTimeFormatPartTypes) => stamp.formatToParts(date).find((p) => p.type === type)?.value ?? "00";
  return `${part("month")}-${part("day")} ${part("hour")}:${part("minute")}:${part("second")}`;
};
const log = (line: string) => process.stdout.write(`INFO ${vllmTime(new Date())} [api_server.py:1882] ${line}\n`);
const model = typeof values.model === "string" ? values.model : "facebook/opt-125m";
const util = Number(values["gpu-memory-utilization"]);
const hostFile = env.GPU_CANARY_SIM_HOST;
const gpuIndex = Number((env.CUDA_VISIBLE_DEVICES ?? "0").split(",")[0] ?? 0);
const fails = new Set((env.SIM_FAIL ?? "").split(",").filter(Boolean));
const processName = env.SIM_PROCESS_NAME ?? "VLLM::EngineCore";
const gib = (mib: number) => (mib / 1024).toFixed(2);

const version = env.SIM_VERSION ?? "0.11.0";
const knob = (name: string, min: number, max: number): number | undefined => {
  const text = env[name];
  if (text === undefined || text === "") return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value < min || value > max) {
    process.stderr.write(`${name}=${text} is not a number from ${min} to ${max}: fix or unset it\n`);
    process.exit(2);
  }
  return value;
};
const flagNumber = (name: string) => (typeof values[name] === "string" ? Number(values[name]) : undefined);
const oomAtUsage = knob("SIM_OOM_AT_USAGE", 0, 1);
let kvCacheTokens = knob("SIM_KV_CACHE_TOKENS", 1, Number.MAX_SAFE_INTEGER);
let requestedMib = 0;
let othersAtStart = 0;
let initialFreeMib = 0;
/** GPU memory of the other processes on this GPU, as nvidia-smi would show it. */
const othersMib = () => {
  if (!hostFile) return 0;
  return liveProcesses(readHost(hostFile))
    .filter((p) => p.gpu_index === gpuIndex && p.pid !== process.pid)
    .reduce((sum, p) => sum + p.used_memory_mib, 0);
};
if (hostFile) {
  const state = readHost(hostFile);
  const gpu = state.gpus.find((g) => g.index === gpuIndex);
  if (!gpu) {
    process.stderr.write(`RuntimeError: CUDA error: invalid device ordinal (CUDA_VISIBLE_DEVICES=${env.CUDA_VISIBLE_DEVICES ?? ""})\n`);
    process.exit(1);
  }
  const cudaTotal = gpu.memory_total_mib - gpu.memory_reserved_mib;
  requestedMib = Math.ceil(cudaTotal * util);
  const free = freeMib(state, gpu, liveProcesses(state));
  if (free < requestedMib) {
    // vLLM's own text (vllm/v1/worker/utils.py request_memory).
    process.stderr.write(
      `ValueError: Free memory on device cuda:${gpuIndex} (${gib(free)}/${gib(cudaTotal)} GiB) on startup is less than desired GPU memory utilization (${util}, ${gib(requestedMib)} GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.\n`,
    );
    process.exit(1);
  }
  othersAtStart = othersMib();
  initialFreeMib = free;
  await registerProcess(hostFile, { gpu_index: gpuIndex, pid: process.pid, name: processName, used_memory_mib: requestedMib });
  kvCacheTokens ??=
    kvCacheTokensFor({
      cudaTotalMib: cudaTotal,
      gpuName: gpu.name,
      util,
      modelDir: model,
      version,
      enforceEager: values["enforce-eager"] === true,
      maxNumSeqs: flagNumber("max-num-seqs"),
      maxNumBatchedTokens: flagNumber("max-num-batched-tokens"),
      kvCacheDtype: typeof values["kv-cache-dtype"] === "string" ? values["kv-cache-dtype"] : undefined,
    }) ?? undefined;
}

// The allocator's text (pytorch c10/cuda/CUDACachingAllocator.cpp), as vLLM logs it before dying.
const outOfMemory = () => {
  process.stderr.write(
    `torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU ${gpuIndex} has a total capacity of 139.80 GiB of which 1.12 GiB is free. Including non-PyTorch memory, this process has ${gib(requestedMib)} GiB memory in use. If reserved but unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid fragmentation.\n`,
  );
  process.exit(1);
};

const app = buildSimVllm({
  model,
  servedModelName: typeof values["served-model-name"] === "string" ? values["served-model-name"] : undefined,
  maxModelLen: flagNumber("max-model-len"),
  maxNumSeqs: flagNumber("max-num-seqs"),
  maxNumBatchedTokens: flagNumber("max-num-batched-tokens"),
  kvCacheTokens,
  loadSlowdown: knob("SIM_LOAD_SLOWDOWN", 0, 100),
  prefillMsPer1kTokens: knob("SIM_PREFILL_MS_PER_1K", 0, 60_000),
  eosAfterTokens: knob("SIM_EOS_AFTER_TOKENS", 1, Number.MAX_SAFE_INTEGER),
  oomAtUsage,
  onOutOfMemory: outOfMemory,
  gpuMemoryUtilization: util,
  version,
  requireModel: env.SIM_REQUIRE_MODEL === "1",
  // vLLM mounts its sleep endpoints only in dev mode with sleep mode enabled.
  sleepMode: values["enable-sleep-mode"] === true && env.VLLM_SERVER_DEV_MODE === "1",
  tokenLatencyMs: env.SIM_TOKEN_LATENCY_MS ? Number(env.SIM_TOKEN_LATENCY_MS) : undefined,
  failure: {
    healthHang: fails.has("health-hang"),
    engineDead: fails.has("engine-dead"),
    completionHang: fails.has("completion-hang"),
    dropMidStream: fails.has("drop-mid-stream"),
  },
  onCompletion: (count) => {
    if (!fails.has("crash-mid-test") || count < Number(env.SIM_CRASH_AFTER ?? 2)) return;
    outOfMemory();
  },
  onSleepChange: async (sleeping) => {
    if (!hostFile) return;
    // Sleep level 1 keeps the CUDA context and graphs on the card: a residue stays.
    const residue = Number(env.SIM_SLEEP_RESIDUE_MIB ?? 1500);
    await registerProcess(hostFile, {
      gpu_index: gpuIndex,
      pid: process.pid,
      name: processName,
      used_memory_mib: sleeping ? residue : requestedMib,
    });
  },
});

/** In-flight requests get this long to finish on SIGTERM, as vLLM's --shutdown-timeout gives them; then the process goes anyway. */
const SHUTDOWN_GRACE_MS = 5000;

const shutdown = async (signal: string) => {
  log(`received ${signal}, shutting down`);
  // A client that went away mid-request (a load stopped at its deadline) must not keep the server, and
  // its GPU memory in nvidia-smi, alive: fastify's close waits for every open request.
  const grace = new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_GRACE_MS).unref());
  await Promise.race([app.close(), grace]);
  if (hostFile) await unregisterProcess(hostFile, process.pid);
  process.exit(0);
};
process.once("SIGTERM", () => void shutdown("SIGTERM"));
process.once("SIGINT", () => void shutdown("SIGINT"));

log(`vLLM API server version ${version}; model ${model}; gpu_memory_utilization ${util}`);
if (kvCacheTokens !== undefined) {
  // vLLM's own line (vllm/v1/core/kv_cache_utils.py), which tells the KV capacity a run got.
  process.stdout.write(
    `INFO ${vllmTime(new Date())} [kv_cache_utils.py:1087] GPU KV cache size: ${kvCacheTokens.toLocaleString("en-US")} tokens\n`,
  );
}
// Like vLLM, nothing answers until the engine is loaded: connections are refused meanwhile.
await new Promise((resolve) => setTimeout(resolve, Number(env.SIM_STARTUP_DELAY_MS ?? 0)));
// The load is vLLM's profiling window: memory another process gives back meanwhile makes free memory
// rise, and vLLM aborts (vllm/v1/worker/gpu_worker.py determine_available_memory's assertion,
// vllm-project/vllm#56830). Stricter than vLLM, which aborts only when the release outweighs what
// its own profiling took: any release does it here.
const profilingMs = Number(env.SIM_STARTUP_DELAY_MS ?? 0);
const released = hostFile && profilingMs > 0 ? othersAtStart - othersMib() : 0;
if (released > 0) {
  process.stderr.write(
    `AssertionError: Error in memory profiling. Initial free memory ${gib(initialFreeMib)} GiB, current free memory ${gib(initialFreeMib + released)} GiB. This happens when other processes sharing the same container release GPU memory while vLLM is profiling during initialization. To fix this, ensure consistent GPU memory allocation or isolate vLLM in its own container.\n`,
  );
  if (hostFile) await unregisterProcess(hostFile, process.pid);
  process.exit(1);
}
await app.listen({ port: Number(values.port), host: String(values.host) });
log(`Starting vLLM API server 0 on http://${String(values.host)}:${String(values.port)}`);
// uvicorn's own line, without a timestamp.
process.stdout.write("INFO:     Application startup complete.\n");
