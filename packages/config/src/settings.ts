import {
  type SettingSchema,
  WHISPER_SIZES,
  absolutePath,
  argumentText,
  boolean,
  envAssignments,
  hostId,
  httpUrl,
  listenAddress,
  logSource,
  number,
  oneOf,
  postgresUrl,
  redactUrlPassword,
  subsystemList,
  text,
  timeZone,
  vllmVersion,
  windowSpec,
} from "./values.ts";

/**
 * One entry per KLR_* setting (the README's Settings table). `defaultValue` is text, parsed like any other
 * source; a function default depends on KLR_HOME. `optional` settings may be unset.
 */
interface SettingDef<K extends string, T> {
  key: K;
  schema: SettingSchema<T>;
  defaultValue?: string | ((context: DefaultContext) => string);
  optional?: boolean;
  secret?: boolean;
  /** shows the value with its secret part hidden (a URL's password), where `secret` would hide it all */
  redact?: (text: string) => string;
  meaning: string;
}

/** What a function default may depend on. */
export interface DefaultContext {
  home: string;
  hostName: string;
}

const def = <const K extends string, T, const O extends boolean = false>(
  d: SettingDef<K, T> & { optional?: O },
): SettingDef<K, T> & { optional?: O } => d;

const seconds = (what: string) => number({ above: 0, expected: `a number of seconds above 0 (${what})` });
const positiveInt = (what: string) => number({ min: 1, integer: true, expected: `a whole number of at least 1 (${what})` });
const gpuIndex = () => number({ min: 0, max: 63, integer: true, expected: "an nvidia-smi GPU index 0-63" });
const port = () => number({ min: 1, max: 65535, integer: true, expected: "a port number 1-65535" });
const util = () => number({ above: 0, max: 1, expected: "a fraction above 0 and at most 1, such as 0.75" });

export const SETTINGS = {
  KLR_GPU_MAINTENANCE_MAX_DOWNTIME: def({
    key: "maxDowntimeSeconds",
    schema: seconds("production downtime allowed per night"),
    defaultValue: "60",
    meaning: "production downtime allowed per night, seconds",
  }),
  KLR_GPU_MAINTENANCE_WINDOW: def({
    key: "maintenanceWindow",
    schema: windowSpec(),
    defaultValue: "03:00-07:00",
    meaning: "local start-end of the nightly window; may wrap midnight",
  }),
  KLR_GPU_MAINTENANCE_TZ: def({
    key: "maintenanceTimeZone",
    schema: timeZone(),
    defaultValue: "America/New_York",
    meaning: "IANA zone of the window and of file dates",
  }),
  KLR_CANARY_MODE: def({
    key: "canaryMode",
    schema: oneOf(["predictive", "canary"] as const),
    defaultValue: "predictive",
    meaning: "predictive (arithmetic only) or canary (real runs)",
  }),
  KLR_CANARY_PORT: def({ key: "canaryPort", schema: port(), defaultValue: "9011", meaning: "port of the canary vLLM" }),
  KLR_CANARY_TIMEOUT: def({
    key: "canaryTimeoutSeconds",
    schema: seconds("from canary launch to verdict"),
    defaultValue: "30",
    meaning: "seconds a canary may take from launch to verdict",
  }),
  KLR_RESTORE_SLA: def({
    key: "restoreSlaSeconds",
    schema: seconds("until production serves again"),
    defaultValue: "15",
    meaning: "seconds within which production must serve again",
  }),
  KLR_ALLOW_SPARE_GPU: def({
    key: "allowSpareGpu",
    schema: boolean(),
    defaultValue: "false",
    meaning: "run canaries on a spare GPU instead of touching production",
  }),
  KLR_SPARE_GPU_ID: def({ key: "spareGpuId", schema: gpuIndex(), defaultValue: "1", meaning: "nvidia-smi index of the spare GPU" }),
  KLR_PRODUCTION_GPU_ID: def({
    key: "productionGpuId",
    schema: gpuIndex(),
    defaultValue: "0",
    meaning: "nvidia-smi index of the GPU production uses",
  }),
  KLR_RATE_LIMIT_MAX_RUNS: def({
    key: "rateLimitMaxRuns",
    schema: positiveInt("canary runs per subsystem in the rolling window"),
    defaultValue: "3",
    meaning: "canary runs per subsystem in the rolling window",
  }),
  KLR_RATE_LIMIT_WINDOW_HOURS: def({
    key: "rateLimitWindowHours",
    schema: number({ above: 0, expected: "a number of hours above 0" }),
    defaultValue: "24",
    meaning: "length of the rolling rate-limit window, hours",
  }),
  KLR_RATE_LIMIT_COOLDOWN_HOURS: def({
    key: "rateLimitCooldownHours",
    schema: number({ min: 0, expected: "a number of hours, 0 or more" }),
    defaultValue: "6",
    meaning: "hours between two runs of one subsystem",
  }),
  KLR_VLLM_MEMORY_UTIL_MIN: def({
    key: "vllmMemoryUtilMin",
    schema: util(),
    defaultValue: "0.60",
    meaning: "lowest vllm_memory_util a candidate may have",
  }),
  KLR_VLLM_MEMORY_UTIL_MAX: def({
    key: "vllmMemoryUtilMax",
    schema: util(),
    defaultValue: "0.90",
    meaning: "highest vllm_memory_util a candidate may have",
  }),
  KLR_QUIESCE: def({
    key: "quiesce",
    schema: oneOf(["stop", "sleep"] as const),
    defaultValue: "stop",
    meaning: "how production makes room: stop the service or put vLLM to sleep",
  }),
  KLR_MAX_MODEL_LEN: def({
    key: "maxModelLen",
    schema: positiveInt("tokens"),
    optional: true,
    meaning: "max model length production serves with (vLLM's default when unset)",
  }),
  KLR_MAX_NUM_SEQS: def({
    key: "maxNumSeqs",
    schema: positiveInt("sequences"),
    optional: true,
    meaning: "max concurrent sequences (vLLM's default when unset)",
  }),
  KLR_MAX_NUM_BATCHED_TOKENS: def({
    key: "maxNumBatchedTokens",
    schema: positiveInt("tokens"),
    optional: true,
    meaning: "max tokens per batch (vLLM's default when unset)",
  }),
  KLR_KV_CACHE_DTYPE: def({
    key: "kvCacheDtype",
    schema: oneOf(["auto", "fp8"] as const),
    defaultValue: "auto",
    meaning: "KV cache dtype: auto or fp8",
  }),
  KLR_VLLM_EXTRA_ARGS: def({
    key: "vllmExtraArgs",
    schema: argumentText("further vLLM flags"),
    optional: true,
    meaning: "further vLLM flags production uses, given to the canary too",
  }),
  KLR_VLLM_CONFIG: def({
    key: "vllmConfigFile",
    schema: absolutePath(),
    optional: true,
    meaning: "production vLLM's --config YAML file, where gpu-canary reads and applies what it tunes",
  }),
  KLR_APPLY_WATCH_HOURS: def({
    key: "applyWatchHours",
    schema: number({ min: 0, max: 720, expected: "hours from 0 to 720" }),
    defaultValue: "24",
    meaning: "after an apply, an out-of-memory event within this many hours rolls it back (0: never)",
  }),
  KLR_AUTO_APPLY: def({
    key: "autoApply",
    schema: boolean(),
    defaultValue: "false",
    meaning: "the daemon applies the best proposed promotion by itself at the next window",
  }),
  KLR_VLLM_EXTRA_ENV: def({
    key: "vllmExtraEnv",
    schema: envAssignments(),
    optional: true,
    meaning: "environment production's vLLM runs with (NAME=value …), given to the canary too",
  }),
  KLR_VLLM_VERSION: def({
    key: "vllmVersion",
    schema: vllmVersion(),
    optional: true,
    meaning: "vLLM version for the memory model (else asked from production)",
  }),
  KLR_VLLM_API_KEY: def({ key: "vllmApiKey", schema: text(), optional: true, secret: true, meaning: "bearer key for vLLM's /v1/*" }),
  KLR_WHISPER_SIZE: def({
    key: "whisperSize",
    schema: oneOf(WHISPER_SIZES),
    defaultValue: "small",
    meaning: "the Whisper size running now",
  }),
  KLR_WHISPER_PROCESS: def({
    key: "whisperProcess",
    schema: text(),
    defaultValue: "whisper",
    meaning: "substring naming Whisper in nvidia-smi's process list",
  }),
  KLR_WHISPER_STOP_COMMAND: def({
    key: "whisperStopCommand",
    schema: text(),
    optional: true,
    meaning: "stops Whisper (sh -c); GPU_CANARY_WHISPER_SIZE names the size",
  }),
  KLR_WHISPER_START_COMMAND: def({
    key: "whisperStartCommand",
    schema: text(),
    optional: true,
    meaning: "starts Whisper at GPU_CANARY_WHISPER_SIZE (sh -c)",
  }),
  KLR_WHISPER_STEADY_TIMEOUT: def({
    key: "whisperSteadyTimeoutSeconds",
    schema: seconds("for a started Whisper's GPU memory to hold still"),
    defaultValue: "20",
    meaning: "seconds a started Whisper's memory may take to hold still",
  }),
  KLR_VLLM_PROCESS: def({
    key: "vllmProcess",
    schema: text(),
    defaultValue: "vllm",
    meaning: "substring naming production vLLM in nvidia-smi's process list",
  }),
  KLR_CANARY_SAMPLES: def({
    key: "canarySamples",
    schema: positiveInt("completed load requests"),
    defaultValue: "5",
    meaning: "completed load requests a canary's verdict needs (fewer: inconclusive)",
  }),
  KLR_CANARY_CONCURRENCY: def({
    key: "canaryConcurrency",
    schema: number({ min: 1, max: 4096, integer: true, expected: "a whole number of requests 1-4096" }),
    optional: true,
    meaning: "requests in flight during a canary's load (default: production's highest seen, at least 2)",
  }),
  KLR_CANARY_PROMPT_TOKENS: def({
    key: "canaryPromptTokens",
    schema: positiveInt("prompt tokens per load request"),
    optional: true,
    meaning: "prompt tokens per load request (default: p95 of production's vllm:request_prompt_tokens)",
  }),
  KLR_CANARY_OUTPUT_TOKENS: def({
    key: "canaryOutputTokens",
    schema: positiveInt("generated tokens per load request"),
    optional: true,
    meaning: "generated tokens per load request (default: p95 of production's vllm:request_generation_tokens)",
  }),
  KLR_CANARY_LOAD_SECONDS: def({
    key: "canaryLoadSeconds",
    schema: number({ above: 0, max: 3600, expected: "seconds above 0, at most 3600" }),
    defaultValue: "10",
    meaning: "seconds a canary's load keeps starting requests (inside KLR_CANARY_TIMEOUT)",
  }),
  KLR_CANARY_MAX_PREEMPTIONS: def({
    key: "canaryMaxPreemptions",
    schema: number({ min: 0, integer: true, expected: "a whole number of at least 0" }),
    defaultValue: "0",
    meaning: "preemptions a canary may show under its load (vllm:num_preemptions_total)",
  }),
  KLR_SUBSYSTEMS: def({
    key: "subsystems",
    schema: subsystemList(),
    defaultValue: "gpu_allocation",
    meaning: "subsystems runs and intents may name",
  }),
  KLR_CANARY_TTFT_P95_MS: def({
    key: "canaryTtftP95Ms",
    schema: number({ above: 0, expected: "milliseconds above 0" }),
    defaultValue: "2000",
    meaning: "a canary's p95 time to first token must stay under this",
  }),
  KLR_CANARY_MAX_SLOWDOWN: def({
    key: "canaryMaxSlowdown",
    schema: number({ min: 1, expected: "a factor of at least 1, such as 1.5" }),
    defaultValue: "1.5",
    meaning: "a canary may be at most this much slower than production",
  }),
  KLR_LOCK_TTL: def({
    key: "lockTtlSeconds",
    schema: seconds("a lock record stays valid without renewal"),
    defaultValue: "120",
    meaning: "seconds a lock record stays valid unless renewed",
  }),
  KLR_HOME: def({ key: "home", schema: absolutePath(), meaning: "root of every gpu-canary path (default: your home directory)" }),
  KLR_VLLM_URL: def({ key: "vllmUrl", schema: httpUrl(), defaultValue: "http://127.0.0.1:8000", meaning: "production vLLM base URL" }),
  KLR_MODEL_PATH: def({
    key: "modelPath",
    schema: absolutePath(),
    defaultValue: ({ home }) => `${home}/models/llm/current`,
    meaning: "model folder production and canary serve",
  }),
  KLR_SERVICE_MANAGER: def({
    key: "serviceManager",
    schema: oneOf(["systemd", "command"] as const),
    defaultValue: "systemd",
    meaning: "systemd, or command (containers, supervisord, …)",
  }),
  KLR_VLLM_SERVICE: def({ key: "vllmService", schema: text(), defaultValue: "vllm.service", meaning: "production systemd unit" }),
  KLR_PRODUCTION_STOP_COMMAND: def({
    key: "productionStopCommand",
    schema: text(),
    optional: true,
    meaning: "stops production (command manager, sh -c)",
  }),
  KLR_PRODUCTION_START_COMMAND: def({
    key: "productionStartCommand",
    schema: text(),
    optional: true,
    meaning: "starts production (command manager, sh -c)",
  }),
  KLR_VLLM_COMMAND: def({
    key: "vllmCommand",
    schema: argumentText("how vLLM is started, e.g. python3 -m vllm.entrypoints.openai.api_server"),
    defaultValue: "python3 -m vllm.entrypoints.openai.api_server",
    meaning: "how to start a canary vLLM",
  }),
  KLR_NVIDIA_SMI: def({ key: "nvidiaSmi", schema: text(), defaultValue: "nvidia-smi", meaning: "the nvidia-smi executable" }),
  KLR_VLLM_LOG: def({
    key: "vllmLog",
    schema: logSource(),
    defaultValue: "journal",
    meaning: "where the observer reads vLLM's log: journal, a file, or command:…",
  }),
  KLR_DAEMON_LISTEN: def({
    key: "daemonListen",
    schema: listenAddress(),
    defaultValue: "127.0.0.1:9012",
    meaning: "the daemon's HTTP address",
  }),
  KLR_DAEMON_TOKEN_FILE: def({
    key: "daemonTokenFile",
    schema: absolutePath(),
    defaultValue: ({ home }) => `${home}/.kloros/daemon.token`,
    meaning: "bearer token file for the daemon's mutating endpoints",
  }),
  KLR_DAEMON_STREAM_CLIENTS: def({
    key: "daemonStreamClients",
    schema: positiveInt("clients of the daemon's /audit/stream at once"),
    defaultValue: "16",
    meaning: "clients of the daemon's /audit/stream at once; more get 503",
  }),
  KLR_NOTIFY_URL: def({ key: "notifyUrl", schema: httpUrl(), optional: true, meaning: "optional webhook for run results" }),
  KLR_STATE_URL: def({
    key: "stateUrl",
    schema: postgresUrl(),
    optional: true,
    redact: redactUrlPassword,
    meaning: "PostgreSQL database the fleet shares (postgres://…); unset: state stays in files under KLR_HOME",
  }),
  KLR_HOST_ID: def({
    key: "hostId",
    schema: hostId(),
    defaultValue: ({ hostName }) => hostName,
    meaning: "this host's name in the fleet database",
  }),
  KLR_FLEET_MAX_CONCURRENT: def({
    key: "fleetMaxConcurrent",
    schema: positiveInt("hosts in maintenance at once"),
    defaultValue: "1",
    meaning: "hosts of the fleet in maintenance at once (with KLR_STATE_URL)",
  }),
} as const;

export type SettingName = keyof typeof SETTINGS;
export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

type Defs = typeof SETTINGS;
type ValueOf<N extends SettingName> = Defs[N]["schema"] extends SettingSchema<infer T> ? T : never;
type KeyOf<N extends SettingName> = Defs[N]["key"];
type IsOptional<N extends SettingName> = Defs[N] extends { optional?: infer O } ? (true extends O ? true : false) : false;

/** The typed settings, camelCase; optional ones are undefined when unset. */
export type Config = {
  [N in SettingName as KeyOf<N>]: IsOptional<N> extends true ? ValueOf<N> | undefined : ValueOf<N>;
};
