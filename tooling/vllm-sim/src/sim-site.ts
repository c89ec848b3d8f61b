import { execFile } from "node:child_process";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { freePort } from "./free-port.ts";
import { createHost, h200, readHost } from "./host-state.ts";
import { PROMPT_TOKENS_PER_WORD } from "./vllm-server.ts";

const SIM_BIN = join(import.meta.dirname, "..", "bin");

/**
 * Llama-3.1-8B-Instruct's config.json fields (huggingface.co/meta-llama/Llama-3.1-8B-Instruct)
 * and its model.safetensors.index.json `metadata.total_size`: a model folder the predictive
 * model reads exactly as it reads the real one, without the 16 GB of weights.
 */
export const LLAMA_31_8B = {
  config: {
    architectures: ["LlamaForCausalLM"],
    hidden_size: 4096,
    intermediate_size: 14336,
    max_position_embeddings: 131072,
    model_type: "llama",
    num_attention_heads: 32,
    num_hidden_layers: 32,
    num_key_value_heads: 8,
    torch_dtype: "bfloat16",
    vocab_size: 128256,
  },
  totalSize: 16060522496,
};

export async function writeModelFolder(dir: string, model = LLAMA_31_8B): Promise<string> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "config.json"), JSON.stringify(model.config, null, 2));
  await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: { total_size: model.totalSize }, weight_map: {} }));
  return dir;
}

export interface SimSiteOptions {
  /** production's --gpu-memory-utilization (default 0.5) */
  productionUtil?: number;
  /** two GPUs (production 0, spare 1) or one */
  gpus?: 1 | 2;
  /** the maintenance window: open now (default), or closed now */
  window?: "open" | "closed";
  /**
   * the maintenance zone the window is written in (KLR_GPU_MAINTENANCE_TZ): default
   * GPU_CANARY_SIM_TZ, else UTC. The clock check runs the suites in a zone whose date differs from UTC's.
   */
  timeZone?: string;
  /**
   * a Whisper at this size beside production, switched by the `command` manager's Whisper commands
   * (KLR_WHISPER_STOP_COMMAND / KLR_WHISPER_START_COMMAND); started by startWhisper()
   */
  whisper?: string;
  /**
   * how Whisper's memory moves after each start (SIM_WHISPER_RAMP_MS): it loads, peaks while it
   * warms up and settles this many ms after its start (default 300), or never holds still
   */
  whisperRampMs?: number | "never";
  /** production started without sleep mode (no VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode): default with */
  sleepMode?: boolean;
  /** production and canaries refuse requests that name no model, as vLLM before 0.8 did */
  requireModel?: boolean;
  /**
   * production reads its utilization from vLLM's own config file: its start passes `--config
   * <dir>/vllm-config.yaml` (holding `gpu-memory-utilization: <productionUtil>` and a few neutral keys)
   * instead of `--gpu-memory-utilization`, and KLR_VLLM_CONFIG names the file (default false)
   */
  configFile?: boolean;
  /** more KLR_* settings */
  settings?: Record<string, string>;
  /** per generated token, production's and the canaries' (SIM_TOKEN_LATENCY_MS; default the sim's 5 ms) */
  tokenLatencyMs?: number;
  /**
   * production traffic, sent for real once startProduction() sees it serve, so production's
   * /metrics histograms (request lengths, TTFT, inter-token latency) show its shape
   */
  traffic?: SimTraffic;
}

export interface SimTraffic {
  /** requests in flight at once */
  concurrency: number;
  /** prompt tokens per request (the prompt is promptTokens / 1.3 words) */
  promptTokens: number;
  /** generated tokens per request (max_tokens with ignore_eos) */
  outputTokens: number;
  /** how many requests startProduction() sends and waits for */
  requests: number;
  /**
   * then keep `concurrency` requests in flight until stopTraffic() or cleanup(), riding out
   * production's restarts, so vllm:num_requests_running shows the concurrency when read
   */
  background?: boolean;
}

export interface SimSite {
  dir: string;
  home: string;
  hostFile: string;
  modelPath: string;
  productionPort: number;
  canaryPort: number;
  /** the maintenance zone its window is written in (KLR_GPU_MAINTENANCE_TZ) */
  timeZone: string;
  /** production's vLLM config file (KLR_VLLM_CONFIG) with SimSiteOptions.configFile, else null */
  vllmConfigFile: string | null;
  /** the KLR_* environment of this site plus GPU_CANARY_SIM_HOST */
  env: Record<string, string>;
  /** production's current PID (from its pid file) */
  productionPid(): Promise<number | null>;
  /** start production; `env` reaches its start command (PRODUCTION_STARTUP_DELAY_MS for a slow load) */
  startProduction(env?: Record<string, string>): Promise<void>;
  /** send production traffic now (default: options.traffic) and wait for it; resolves with the requests that failed */
  sendTraffic(traffic?: SimTraffic): Promise<number>;
  /** stop the background traffic and wait for its requests to end */
  stopTraffic(): Promise<void>;
  /** stop production with its stop command and wait until its process is gone */
  stopProduction(): Promise<void>;
  /** start the site's Whisper at its configured size (options.whisper) */
  startWhisper(): Promise<void>;
  /** when each Whisper this site started held its memory steady, from its log ("steady at …") */
  whisperSteadyTimes(): Promise<Date[]>;
  /** stop whatever this site started: production, canaries, Whisper */
  cleanup(): Promise<void>;
}

/** HH:MM of an instant on the wall clock of `timeZone`. */
const hhmm = (date: Date, timeZone: string) =>
  new Intl.DateTimeFormat("en-GB", { timeZone, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).format(date);

function sh(command: string, env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("/bin/sh", ["-c", command], { env: { ...process.env, ...env }, timeout: 20_000 }, (error, stdout) =>
      error ? reject(new Error(`${command}: ${error.message}`)) : resolve(stdout),
    );
  });
}

/**
 * A whole simulated production host in a folder: GPU(s) in a host file, the nvidia-smi and vLLM
 * stand-ins, a model folder, production managed by the `command` manager (started detached,
 * stopped by signal), and the KLR_* settings that point gpu-canary at all of it — nothing real.
 */
/**
 * A simulated host on which an apply (or a host's part of a fleet rollout) is tested: production at
 * util 0.7 from a `--config` file, a one-second canary load, and loose latency limits — latency beside
 * another test file on a two-core machine is noise, so a verification a test wants failed is made to
 * fail by its KV cache or by a limit the test sets tight in `settings`.
 */
export function applySiteOptions(settings: Record<string, string> = {}, options: SimSiteOptions = {}): SimSiteOptions {
  return {
    configFile: true,
    productionUtil: 0.7,
    ...options,
    settings: {
      KLR_VLLM_MEMORY_UTIL_MIN: "0.1",
      KLR_MAX_MODEL_LEN: "8192",
      KLR_CANARY_LOAD_SECONDS: "1",
      KLR_CANARY_MAX_SLOWDOWN: "20",
      KLR_CANARY_TTFT_P95_MS: "20000",
      KLR_CANARY_TIMEOUT: "30",
      KLR_GPU_MAINTENANCE_MAX_DOWNTIME: "120",
      ...settings,
    },
  };
}

export async function createSimSite(dir: string, options: SimSiteOptions = {}): Promise<SimSite> {
  const home = join(dir, "home");
  const hostFile = join(dir, "host.json");
  await mkdir(home, { recursive: true });
  await createHost(hostFile, { gpus: options.gpus === 1 ? [h200(0)] : [h200(0), h200(1)] });
  const modelPath = await writeModelFolder(join(home, "models", "llm", "current"));
  const productionPort = freePort();
  const canaryPort = productionPort + 1;
  const pidFile = join(dir, "production.pid");
  const util = options.productionUtil ?? 0.5;
  const vllmConfigFile = options.configFile ? join(dir, "vllm-config.yaml") : null;
  if (vllmConfigFile)
    await writeFile(
      vllmConfigFile,
      "# production vLLM's config file (vllm serve --config), written by createSimSite\n" +
        `gpu-memory-utilization: ${util}\nmax-model-len: 32768\nkv-cache-dtype: auto\n`,
    );
  const utilFlags = vllmConfigFile ? `--config ${vllmConfigFile}` : `--gpu-memory-utilization ${util}`;
  // The production command drops the canary-only knobs (failures, OOM, a forced KV capacity) and takes its own start delay.
  const latency = options.tokenLatencyMs === undefined ? "" : `SIM_TOKEN_LATENCY_MS=${options.tokenLatencyMs} `;
  const start =
    `setsid env -u SIM_FAIL -u SIM_OOM_AT_USAGE -u SIM_KV_CACHE_TOKENS SIM_STARTUP_DELAY_MS="\${PRODUCTION_STARTUP_DELAY_MS:-0}" CUDA_VISIBLE_DEVICES=0 ${latency}` +
    (options.requireModel ? "SIM_REQUIRE_MODEL=1 " : "") +
    (options.sleepMode === false ? "" : "VLLM_SERVER_DEV_MODE=1 ") +
    `${join(SIM_BIN, "vllm")} --port ${productionPort} --model ${modelPath} ${utilFlags}${options.sleepMode === false ? "" : " --enable-sleep-mode"} ` +
    `>> ${join(dir, "production.log")} 2>&1 < /dev/null & echo $! > ${pidFile}`;
  // Like `systemctl stop`: stopping a production that is not running succeeds.
  const stop = `pid="$(cat ${pidFile} 2>/dev/null)"; if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid"; fi`;
  // Whisper's command line names a file of this folder, so cleanup() finds it too.
  const whisperPid = join(dir, "whisper.pid");
  const whisperStart =
    `setsid env CUDA_VISIBLE_DEVICES=0 SIM_WHISPER_RAMP_MS=${options.whisperRampMs ?? 300} ${join(SIM_BIN, "whisper")} "$GPU_CANARY_WHISPER_SIZE" ${join(dir, "whisper")} ` +
    `>> ${join(dir, "whisper.log")} 2>&1 < /dev/null & echo $! > ${whisperPid}`;
  const whisperSettings: Record<string, string> = options.whisper
    ? {
        KLR_WHISPER_SIZE: options.whisper,
        KLR_WHISPER_PROCESS: "whisper",
        // Like `systemctl stop`, it returns once the Whisper is gone (its memory given back).
        KLR_WHISPER_STOP_COMMAND: `pid="$(cat ${whisperPid})"; kill -TERM "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done`,
        KLR_WHISPER_START_COMMAND: whisperStart,
      }
    : {};
  const now = new Date();
  const zone = options.timeZone ?? (process.env.GPU_CANARY_SIM_TZ || "UTC");
  const around = (fromHours: number, toHours: number) =>
    `${hhmm(new Date(now.getTime() + fromHours * 3600_000), zone)}-${hhmm(new Date(now.getTime() + toHours * 3600_000), zone)}`;
  const window = options.window === "closed" ? around(2, 3) : around(-1, 1);
  const env: Record<string, string> = {
    KLR_HOME: home,
    KLR_SERVICE_MANAGER: "command",
    KLR_PRODUCTION_START_COMMAND: start,
    KLR_PRODUCTION_STOP_COMMAND: stop,
    KLR_VLLM_URL: `http://127.0.0.1:${productionPort}`,
    KLR_CANARY_PORT: String(canaryPort),
    KLR_DAEMON_LISTEN: `127.0.0.1:${canaryPort + 1}`,
    KLR_VLLM_COMMAND: join(SIM_BIN, "vllm"),
    KLR_NVIDIA_SMI: join(SIM_BIN, "nvidia-smi"),
    // Production's own log, as vLLM writes it: its starts set the floor of the restore estimate.
    KLR_VLLM_LOG: join(dir, "production.log"),
    KLR_MODEL_PATH: modelPath,
    KLR_GPU_MAINTENANCE_TZ: zone,
    KLR_GPU_MAINTENANCE_WINDOW: window,
    KLR_CANARY_MODE: "canary",
    // A short load keeps the many runs of a test suite quick; the simulated vLLM serves in milliseconds.
    KLR_CANARY_LOAD_SECONDS: "2",
    KLR_ALLOW_SPARE_GPU: "false",
    GPU_CANARY_SIM_HOST: hostFile,
    ...(vllmConfigFile ? { KLR_VLLM_CONFIG: vllmConfigFile } : {}),
    ...whisperSettings,
    ...(options.requireModel ? { SIM_REQUIRE_MODEL: "1" } : {}),
    ...(options.tokenLatencyMs === undefined ? {} : { SIM_TOKEN_LATENCY_MS: String(options.tokenLatencyMs) }),
    ...options.settings,
  };
  const productionPid = async () => {
    try {
      const text = (await sh(`cat ${pidFile}`, {})).trim();
      return text ? Number(text) : null;
    } catch {
      return null;
    }
  };
  const productionUrl = `http://127.0.0.1:${productionPort}`;
  let background: { stop: AbortController; done: Promise<unknown> } | null = null;
  const stopTraffic = async () => {
    const running = background;
    background = null;
    running?.stop.abort();
    await running?.done;
  };
  return {
    dir,
    home,
    hostFile,
    modelPath,
    productionPort,
    canaryPort,
    timeZone: zone,
    vllmConfigFile,
    env,
    productionPid,
    async startProduction(extra = {}) {
      await sh(start, { GPU_CANARY_SIM_HOST: hostFile, ...extra });
      const deadline = Date.now() + 30_000 + Number(extra.PRODUCTION_STARTUP_DELAY_MS ?? 0);
      while (Date.now() < deadline) {
        const ok = await fetch(`http://127.0.0.1:${productionPort}/health`).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) {
          const traffic = options.traffic;
          if (traffic) {
            await sendTraffic(productionUrl, modelPath, traffic, traffic.requests);
            if (traffic.background && !background) {
              const stop = new AbortController();
              background = { stop, done: sendTraffic(productionUrl, modelPath, traffic, Number.POSITIVE_INFINITY, stop.signal) };
            }
          }
          return;
        }
        await sleep(50);
      }
      throw new Error(`the simulated production vLLM did not start on port ${productionPort}`);
    },
    async sendTraffic(traffic = options.traffic) {
      if (!traffic) throw new Error("no traffic to send: pass one or SimSiteOptions.traffic");
      return sendTraffic(productionUrl, modelPath, traffic, traffic.requests);
    },
    stopTraffic,
    async stopProduction() {
      const pid = await productionPid();
      await sh(stop, {}).catch(() => undefined);
      const alive = (p: number) => {
        try {
          process.kill(p, 0);
          return true;
        } catch {
          return false;
        }
      };
      const deadline = Date.now() + 30_000;
      while (pid !== null && alive(pid)) {
        if (Date.now() > deadline) throw new Error(`the simulated production (PID ${pid}) did not stop`);
        await sleep(50);
      }
    },
    async startWhisper() {
      if (!options.whisper) throw new Error("this site has no Whisper (SimSiteOptions.whisper)");
      await sh(whisperStart, { GPU_CANARY_SIM_HOST: hostFile, GPU_CANARY_WHISPER_SIZE: options.whisper });
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline) {
        if (readHost(hostFile).processes.some((p) => p.name.startsWith("whisper"))) return;
        await sleep(50);
      }
      throw new Error("the simulated Whisper did not start");
    },
    async whisperSteadyTimes() {
      const log = await readFile(join(dir, "whisper.log"), "utf8").catch(() => "");
      return [...log.matchAll(/ steady at (\S+) /g)].map((m) => new Date(m[1] ?? ""));
    },
    async cleanup() {
      await stopTraffic();
      // Every process this site started names a file in its folder on its command line. The pattern's
      // first character in brackets keeps pkill from matching the shell that runs it.
      const pattern = `[${dir.slice(0, 1)}]${dir.slice(1)}/`;
      await sh(`kill -KILL "$(cat ${pidFile} 2>/dev/null)" 2>/dev/null; true`, {});
      await sh(`pkill -KILL -f -- '${pattern.replace(/'/g, "")}'; true`, {});
    },
  };
}

/**
 * Send `count` completions of the traffic's shape to a vLLM, `concurrency` at a time; a failed
 * request (production restarting) is counted and, in the background, retried after a pause.
 * Resolves with how many failed.
 */
async function sendTraffic(url: string, model: string, traffic: SimTraffic, count: number, signal?: AbortSignal): Promise<number> {
  const words = Math.max(1, Math.round(traffic.promptTokens / PROMPT_TOKENS_PER_WORD));
  const prompt = Array.from({ length: words }, (_, i) => (i % 2 === 0 ? "canary" : "load")).join(" ");
  const body = JSON.stringify({ model, prompt, max_tokens: traffic.outputTokens, ignore_eos: true });
  let sent = 0;
  let failed = 0;
  const worker = async () => {
    while (sent < count && !signal?.aborted) {
      sent += 1;
      const ok = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        signal,
      }).then(
        async (r) => {
          await r.arrayBuffer();
          return r.ok;
        },
        () => false,
      );
      if (!ok) {
        failed += 1;
        if (signal) await sleep(100).catch(() => undefined);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, traffic.concurrency) }, worker));
  return failed;
}
