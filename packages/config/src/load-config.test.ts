import { describe, expect, it } from "vitest";
import { requireConfig } from "./index.ts";
import { loadConfig } from "./load-config.ts";
import { layoutFor } from "./layout.ts";

const home = "/home/kloros";

function load(env: Record<string, string> = {}, file: string | null = null) {
  return loadConfig({
    env,
    homeDir: home,
    hostName: "gpu-a",
    readText: (path) => (path === `${home}/.kloros_env` || path === env.KLR_ENV_FILE ? file : null),
  });
}

function errorsOf(env: Record<string, string>, file: string | null = null): string[] {
  const result = load(env, file);
  if (result.ok) throw new Error("expected settings errors");
  return result.errors;
}

describe("loadConfig", () => {
  it("gives the README's defaults with no env file and no environment", () => {
    const result = requireConfig(load());
    expect(result.envFile).toBeNull();
    expect(result.config).toMatchObject({
      maxDowntimeSeconds: 60,
      maintenanceWindow: { start: { hour: 3, minute: 0 }, end: { hour: 7, minute: 0 }, text: "03:00-07:00" },
      maintenanceTimeZone: "America/New_York",
      canaryMode: "predictive",
      canaryPort: 9011,
      canaryTimeoutSeconds: 30,
      restoreSlaSeconds: 15,
      allowSpareGpu: false,
      spareGpuId: 1,
      productionGpuId: 0,
      rateLimitMaxRuns: 3,
      rateLimitWindowHours: 24,
      rateLimitCooldownHours: 6,
      vllmMemoryUtilMin: 0.6,
      vllmMemoryUtilMax: 0.9,
      quiesce: "stop",
      kvCacheDtype: "auto",
      whisperSize: "small",
      canarySamples: 5,
      canaryLoadSeconds: 10,
      canaryMaxPreemptions: 0,
      subsystems: ["gpu_allocation"],
      canaryTtftP95Ms: 2000,
      canaryMaxSlowdown: 1.5,
      lockTtlSeconds: 120,
      home,
      vllmUrl: "http://127.0.0.1:8000",
      modelPath: "/home/kloros/models/llm/current",
      serviceManager: "systemd",
      vllmService: "vllm.service",
      vllmLog: { kind: "journal" },
      daemonListen: { host: "127.0.0.1", port: 9012 },
      daemonTokenFile: "/home/kloros/.kloros/daemon.token",
      daemonStreamClients: 16,
    });
    expect(result.config.maxModelLen).toBeUndefined();
    // unset: the canary's load takes its shape from production
    expect(result.config.canaryConcurrency).toBeUndefined();
    expect(result.config.canaryPromptTokens).toBeUndefined();
    expect(result.config.canaryOutputTokens).toBeUndefined();
    expect(result.origins.KLR_CANARY_PORT).toEqual({ text: "9011", source: { kind: "default" } });
  });

  it("layers defaults < env file < environment and says where each value came from", () => {
    const result = requireConfig(
      load({ KLR_CANARY_PORT: "9100" }, "KLR_CANARY_PORT=9050\nKLR_CANARY_MODE=predictive\nKLR_CANARY_MODE=canary\n"),
    );
    expect(result.config.canaryPort).toBe(9100);
    expect(result.config.canaryMode).toBe("canary");
    expect(result.envFile).toBe("/home/kloros/.kloros_env");
    expect(result.origins.KLR_CANARY_PORT.source).toEqual({ kind: "environment" });
    expect(result.origins.KLR_CANARY_MODE.source).toEqual({ kind: "env-file", file: "/home/kloros/.kloros_env", line: 3 });
  });

  it("derives paths from KLR_HOME, including the env file's location", () => {
    const seen: string[] = [];
    const result = requireConfig(loadConfig({ env: { KLR_HOME: "/srv/k" }, homeDir: home, readText: (path) => (seen.push(path), null) }));
    expect(seen).toEqual(["/srv/k/.kloros_env"]);
    expect(result.config.modelPath).toBe("/srv/k/models/llm/current");
    expect(result.config.daemonTokenFile).toBe("/srv/k/.kloros/daemon.token");
  });

  it("reads KLR_ENV_FILE when given, and refuses one that does not exist", () => {
    const ok = loadConfig({
      env: { KLR_ENV_FILE: "/etc/gc.env" },
      homeDir: home,
      readText: (p) => (p === "/etc/gc.env" ? "KLR_CANARY_SAMPLES=7" : null),
    });
    expect(requireConfig(ok).config.canarySamples).toBe(7);
    expect(errorsOf({ KLR_ENV_FILE: "/nope.env" })).toEqual([
      'KLR_ENV_FILE: expected an existing env file, got "/nope.env" (no such file)',
    ]);
  });

  it("reports an env file it cannot read", () => {
    const result = loadConfig({
      env: {},
      homeDir: home,
      readText: () => {
        throw Object.assign(new Error("denied"), { code: "EACCES" });
      },
    });
    expect(!result.ok && result.errors).toEqual(["KLR_ENV_FILE: cannot read /home/kloros/.kloros_env (EACCES)"]);
  });

  it.each([
    ["KLR_GPU_MAINTENANCE_MAX_DOWNTIME", "-5", "seconds above 0"],
    ["KLR_GPU_MAINTENANCE_MAX_DOWNTIME", "sixty", "seconds above 0"],
    ["KLR_GPU_MAINTENANCE_WINDOW", "3-7", "HH:MM-HH:MM"],
    ["KLR_GPU_MAINTENANCE_WINDOW", "25:00-07:00", "HH:MM-HH:MM"],
    ["KLR_GPU_MAINTENANCE_WINDOW", "03:00-03:00", "start and end must differ"],
    ["KLR_GPU_MAINTENANCE_TZ", "Mars/Olympus", "IANA time zone"],
    ["KLR_CANARY_MODE", "yolo", "one of predictive, canary"],
    ["KLR_CANARY_PORT", "70000", "port number"],
    ["KLR_CANARY_PORT", "90.5", "port number"],
    ["KLR_CANARY_TIMEOUT", "0", "seconds above 0"],
    ["KLR_RESTORE_SLA", "", "seconds above 0"],
    ["KLR_ALLOW_SPARE_GPU", "maybe", "true/false"],
    ["KLR_SPARE_GPU_ID", "-1", "GPU index"],
    ["KLR_PRODUCTION_GPU_ID", "gpu0", "GPU index"],
    ["KLR_RATE_LIMIT_MAX_RUNS", "0", "at least 1"],
    ["KLR_RATE_LIMIT_WINDOW_HOURS", "0", "hours above 0"],
    ["KLR_RATE_LIMIT_COOLDOWN_HOURS", "-1", "0 or more"],
    ["KLR_VLLM_MEMORY_UTIL_MIN", "0", "above 0 and at most 1"],
    ["KLR_VLLM_MEMORY_UTIL_MAX", "1.2", "above 0 and at most 1"],
    ["KLR_QUIESCE", "pause", "one of stop, sleep"],
    ["KLR_MAX_MODEL_LEN", "4k", "whole number"],
    ["KLR_MAX_NUM_SEQS", "0", "whole number"],
    ["KLR_MAX_NUM_BATCHED_TOKENS", "1.5", "whole number"],
    ["KLR_KV_CACHE_DTYPE", "fp16", "one of auto, fp8"],
    ["KLR_VLLM_VERSION", "latest", "vLLM version"],
    ["KLR_WHISPER_SIZE", "huge", "one of none, tiny"],
    ["KLR_CANARY_SAMPLES", "0", "at least 1"],
    ["KLR_CANARY_CONCURRENCY", "0", "a whole number of requests 1-4096"],
    ["KLR_CANARY_CONCURRENCY", "-8", "a whole number of requests 1-4096"],
    ["KLR_CANARY_CONCURRENCY", "2.5", "a whole number of requests 1-4096"],
    ["KLR_CANARY_CONCURRENCY", "eight", "a whole number of requests 1-4096"],
    ["KLR_CANARY_CONCURRENCY", "4097", "a whole number of requests 1-4096"],
    ["KLR_CANARY_PROMPT_TOKENS", "0", "at least 1 (prompt tokens per load request)"],
    ["KLR_CANARY_PROMPT_TOKENS", "-2000", "at least 1 (prompt tokens per load request)"],
    ["KLR_CANARY_PROMPT_TOKENS", "1999.5", "at least 1 (prompt tokens per load request)"],
    ["KLR_CANARY_PROMPT_TOKENS", "2k", "at least 1 (prompt tokens per load request)"],
    ["KLR_CANARY_OUTPUT_TOKENS", "0", "at least 1 (generated tokens per load request)"],
    ["KLR_CANARY_OUTPUT_TOKENS", "-500", "at least 1 (generated tokens per load request)"],
    ["KLR_CANARY_OUTPUT_TOKENS", "0.5", "at least 1 (generated tokens per load request)"],
    ["KLR_CANARY_OUTPUT_TOKENS", "many", "at least 1 (generated tokens per load request)"],
    ["KLR_CANARY_LOAD_SECONDS", "0", "seconds above 0, at most 3600"],
    ["KLR_CANARY_LOAD_SECONDS", "-10", "seconds above 0, at most 3600"],
    ["KLR_CANARY_LOAD_SECONDS", "ten", "seconds above 0, at most 3600"],
    ["KLR_CANARY_LOAD_SECONDS", "3601", "seconds above 0, at most 3600"],
    ["KLR_CANARY_MAX_PREEMPTIONS", "-1", "a whole number of at least 0"],
    ["KLR_CANARY_MAX_PREEMPTIONS", "0.5", "a whole number of at least 0"],
    ["KLR_CANARY_MAX_PREEMPTIONS", "none", "a whole number of at least 0"],
    ["KLR_SUBSYSTEMS", "GPU ALLOC", "comma-separated list"],
    ["KLR_CANARY_TTFT_P95_MS", "-1", "milliseconds above 0"],
    ["KLR_CANARY_MAX_SLOWDOWN", "0.5", "at least 1"],
    ["KLR_LOCK_TTL", "forever", "seconds above 0"],
    ["KLR_HOME", "relative/home", "absolute path"],
    ["KLR_VLLM_URL", "127.0.0.1:8000", "http:// or https:// URL"],
    ["KLR_MODEL_PATH", "models/llm", "absolute path"],
    ["KLR_SERVICE_MANAGER", "docker", "one of systemd, command"],
    ["KLR_VLLM_LOG", "vllm.log", "journal, an absolute file path"],
    ["KLR_VLLM_LOG", "command:", "a command after command:"],
    ["KLR_VLLM_LOG", "command:docker logs -f vllm | grep ERROR", "found `|`"],
    ["KLR_VLLM_EXTRA_ARGS", "--x; rm -rf /", "found `;`"],
    ["KLR_VLLM_EXTRA_ARGS", "--served-model-name 'my model", "a single quote is never closed"],
    ["KLR_VLLM_EXTRA_ARGS", '--chat-template "x', "a double quote is never closed"],
    ["KLR_VLLM_EXTRA_ARGS", "--download-dir $HF_HOME", "found `$HF_HOME`"],
    ["KLR_VLLM_EXTRA_ARGS", "--x > /tmp/log", "found `>`"],
    ["KLR_VLLM_EXTRA_ENV", "VLLM_USE_V1", "not an assignment: VLLM_USE_V1"],
    ["KLR_VLLM_EXTRA_ENV", "VLLM_USE_V1=0 --enforce-eager", "not an assignment: --enforce-eager"],
    ["KLR_VLLM_EXTRA_ENV", "A=$HOME", "found `$HOME`"],
    ["KLR_VLLM_COMMAND", "vllm serve && echo", "found `&&`"],
    ["KLR_VLLM_COMMAND", "/opt/vllm/bin/* serve", "found the glob"],
    ["KLR_DAEMON_LISTEN", "9012", "HOST:PORT"],
    ["KLR_DAEMON_LISTEN", "127.0.0.1:99999", "HOST:PORT"],
    ["KLR_DAEMON_TOKEN_FILE", "token", "absolute path"],
    ["KLR_DAEMON_STREAM_CLIENTS", "0", "at least 1"],
    ["KLR_NOTIFY_URL", "ftp://x", "http:// or https:// URL"],
  ])("rejects %s=%j naming the variable, the value and what is expected", (name, value, expected) => {
    const errors = errorsOf({ [name]: value });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`${name}: expected`);
    expect(errors[0]).toContain(expected);
    expect(errors[0]).toContain(JSON.stringify(value));
    expect(errors[0]).toContain("(from the environment)");
  });

  it("takes the canary's load settings at their bounds: a fraction of a second, no preemption allowed, one request in flight", () => {
    const { config } = requireConfig(
      load({
        KLR_CANARY_LOAD_SECONDS: "0.5",
        KLR_CANARY_MAX_PREEMPTIONS: "0",
        KLR_CANARY_CONCURRENCY: "1",
        KLR_CANARY_PROMPT_TOKENS: "1",
        KLR_CANARY_OUTPUT_TOKENS: "1",
      }),
    );
    expect(config).toMatchObject({
      canaryLoadSeconds: 0.5,
      canaryMaxPreemptions: 0,
      canaryConcurrency: 1,
      canaryPromptTokens: 1,
      canaryOutputTokens: 1,
    });
    expect(requireConfig(load({ KLR_CANARY_LOAD_SECONDS: "3600", KLR_CANARY_CONCURRENCY: "4096" })).config).toMatchObject({
      canaryLoadSeconds: 3600,
      canaryConcurrency: 4096,
    });
  });

  it("keeps command lines that split cleanly, quotes and backslashes included", () => {
    const result = load({
      KLR_VLLM_COMMAND: "/opt/vllm/.venv/bin/python3 -m vllm.entrypoints.openai.api_server",
      KLR_VLLM_EXTRA_ARGS: `--served-model-name "my model" --x 'a b' --y a\\ b --z "it's"`,
    });
    expect(result.ok && result.config.vllmExtraArgs).toBe(`--served-model-name "my model" --x 'a b' --y a\\ b --z "it's"`);
  });

  it("reads KLR_VLLM_EXTRA_ENV as variables, quotes and all", () => {
    const result = load({ KLR_VLLM_EXTRA_ENV: `VLLM_USE_V1=0 VLLM_LOGGING_LEVEL=DEBUG HF_HOME="/srv/hf cache" EMPTY=` });
    expect(result.ok && result.config.vllmExtraEnv).toEqual({
      VLLM_USE_V1: "0",
      VLLM_LOGGING_LEVEL: "DEBUG",
      HF_HOME: "/srv/hf cache",
      EMPTY: "",
    });
  });

  it("names the env file line of a bad value", () => {
    expect(errorsOf({}, "# c\nKLR_CANARY_MODE=sometimes\n")).toEqual([
      'KLR_CANARY_MODE: expected one of predictive, canary, got "sometimes" (from /home/kloros/.kloros_env:2)',
    ]);
  });

  it("never echoes the API key, even when it is wrong", () => {
    const result = requireConfig(load({ KLR_VLLM_API_KEY: "sk-secret" }));
    expect(result.config.vllmApiKey).toBe("sk-secret");
    expect(result.origins.KLR_VLLM_API_KEY.text).toBe("********");
  });

  it.each([
    [
      { KLR_VLLM_MEMORY_UTIL_MIN: "0.9", KLR_VLLM_MEMORY_UTIL_MAX: "0.6" },
      "KLR_VLLM_MEMORY_UTIL_MIN: expected at most KLR_VLLM_MEMORY_UTIL_MAX (0.6), got 0.9",
    ],
    [{ KLR_CANARY_PORT: "8000" }, "KLR_CANARY_PORT: expected a port other than production's"],
    [{ KLR_VLLM_URL: "http://gpu-host", KLR_CANARY_PORT: "80" }, "KLR_CANARY_PORT: expected a port other than production's"],
    [{ KLR_CANARY_PORT: "9012" }, "KLR_CANARY_PORT: expected a port other than the daemon's"],
    [{ KLR_DAEMON_LISTEN: "127.0.0.1:8000" }, "KLR_DAEMON_LISTEN: expected a port other than production's"],
    [{ KLR_ALLOW_SPARE_GPU: "yes", KLR_SPARE_GPU_ID: "0" }, "KLR_SPARE_GPU_ID: expected a GPU other than production's"],
  ])("rejects the broken combination %j", (env, message) => {
    expect(errorsOf(env)[0]).toContain(message);
  });

  it("allows the spare GPU index to equal production's while spare mode is off", () => {
    expect(load({ KLR_SPARE_GPU_ID: "0" }).ok).toBe(true);
  });

  it("accepts booleans in any case and trims values", () => {
    for (const [text, value] of [
      ["TRUE", true],
      ["Yes", true],
      ["1", true],
      ["no", false],
      [" False ", false],
      ["0", false],
    ] as const) {
      expect(requireConfig(load({ KLR_ALLOW_SPARE_GPU: text })).config.allowSpareGpu).toBe(value);
    }
  });

  it("reads the other values' forms", () => {
    const { config } = requireConfig(
      load({
        KLR_GPU_MAINTENANCE_WINDOW: "23:00-02:00",
        KLR_SUBSYSTEMS: "gpu_allocation, whisper_tuning,gpu_allocation",
        KLR_VLLM_LOG: "command:docker logs -f vllm",
        KLR_DAEMON_LISTEN: "[::1]:9300",
        KLR_VLLM_VERSION: "v0.6.3.post1",
        KLR_VLLM_URL: "http://127.0.0.1:8000/",
        KLR_MAX_MODEL_LEN: "32768",
        KLR_VLLM_API_KEY: "",
      }),
    );
    expect(config.maintenanceWindow.end).toEqual({ hour: 2, minute: 0 });
    expect(config.subsystems).toEqual(["gpu_allocation", "whisper_tuning"]);
    expect(config.vllmLog).toEqual({ kind: "command", command: "docker logs -f vllm" });
    expect(config.daemonListen).toEqual({ host: "::1", port: 9300 });
    expect(config.vllmVersion).toBe("0.6.3.post1");
    expect(config.vllmUrl).toBe("http://127.0.0.1:8000");
    expect(config.maxModelLen).toBe(32768);
    expect(config.vllmApiKey).toBeUndefined();
  });

  it("ignores other KLR_ keys of the wider system but suggests a near miss", () => {
    const result = requireConfig(
      load({ KLR_CANARY_PROT: "1", KLR_OTHER_SUBSYSTEM_THING: "x" }, "KLR_CANARY_MODDE=canary\nKLR_TTS_VOICE=en\n"),
    );
    expect(result.warnings).toEqual([
      "KLR_CANARY_MODDE (/home/kloros/.kloros_env:1) is not a gpu-canary setting: did you mean KLR_CANARY_MODE?",
      "KLR_CANARY_PROT (the environment) is not a gpu-canary setting: did you mean KLR_CANARY_PORT?",
    ]);
    expect(result.config.canaryMode).toBe("predictive");
  });

  it("lists every bad variable at once", () => {
    const errors = errorsOf({ KLR_CANARY_PORT: "x", KLR_CANARY_MODE: "y" }, "KLR_BROKEN line\n");
    expect(errors).toHaveLength(3);
  });

  it("warns about the shell's own lines in the shared env file and goes on: every command still runs", () => {
    const loaded = load({}, "alias ll=ls\nPATH+=:/opt/bin\nKLR_CANARY_MODE=canary\n");
    expect(loaded.ok).toBe(true);
    expect(loaded.warnings).toEqual([
      expect.stringMatching(/:1: expected KEY=value, got "alias ll=ls" \(not a gpu-canary setting: ignored\)$/),
      expect.stringMatching(/:2: expected KEY=value, got "PATH\+=:\/opt\/bin"/),
    ]);
    expect(requireConfig(loaded).config.canaryMode).toBe("canary");
  });
});

describe("fleet settings", () => {
  it("keeps state in files, names the host after the machine and allows one host in maintenance by default", () => {
    const { config } = requireConfig(load());
    expect(config.stateUrl).toBeUndefined();
    expect(config.hostId).toBe("gpu-a");
    expect(config.fleetMaxConcurrent).toBe(1);
  });

  it("takes a postgres URL, shows it with its password hidden, and the host id and cap given", () => {
    const url = "postgresql://gpu_canary:s3cret@db.example:5432/fleet";
    const result = requireConfig(load({ KLR_STATE_URL: url, KLR_HOST_ID: "gpu-b.rack-2", KLR_FLEET_MAX_CONCURRENT: "3" }));
    expect(result.config).toMatchObject({ stateUrl: url, hostId: "gpu-b.rack-2", fleetMaxConcurrent: 3 });
    expect(result.origins.KLR_STATE_URL.text).toBe("postgresql://gpu_canary:********@db.example:5432/fleet");
    expect(result.origins.KLR_HOST_ID.source).toEqual({ kind: "environment" });
  });

  it("names each bad fleet setting, never echoing the database password", () => {
    const errors = errorsOf({ KLR_STATE_URL: "mysql://root:hunter2@db/fleet", KLR_HOST_ID: "gpu a", KLR_FLEET_MAX_CONCURRENT: "0" });
    expect(errors).toEqual([
      expect.stringMatching(
        /^KLR_STATE_URL: expected a postgres:\/\/ or postgresql:\/\/ URL .*, got "mysql:\/\/root:\*{8}@db\/fleet" \(from the environment\)$/,
      ),
      expect.stringMatching(/^KLR_HOST_ID: expected a host name of letters, digits/),
      expect.stringMatching(/^KLR_FLEET_MAX_CONCURRENT: expected a whole number of at least 1 \(hosts in maintenance at once\), got "0"/),
    ]);
    expect(errors.join("\n")).not.toContain("hunter2");
    expect(errorsOf({ KLR_FLEET_MAX_CONCURRENT: "1.5" })).toEqual([expect.stringMatching(/^KLR_FLEET_MAX_CONCURRENT: /)]);
    expect(errorsOf({ KLR_STATE_URL: "postgres:///fleet" })).toEqual([expect.stringMatching(/^KLR_STATE_URL: /)]);
  });
});

describe("layoutFor", () => {
  it("puts every file where the operations checklist looks for it", () => {
    const { config } = requireConfig(load());
    const layout = layoutFor(config);
    expect(layout.gpuLock).toBe("/home/kloros/.kloros/locks/gpu_maintenance.lock");
    expect(layout.watchdogReport).toBe("/home/kloros/.kloros/locks/gpu_maintenance.watchdog.json");
    expect(layout.budgetFile("20261128")).toBe("/home/kloros/.kloros/maintenance/gpu_budget_20261128.json");
    expect(layout.rateLimits).toBe("/home/kloros/.kloros/maintenance/rate_limits.json");
    expect(layout.vllmSeen).toBe("/home/kloros/.kloros/maintenance/vllm_seen.json");
    expect(layout.auditFile("20261128")).toBe("/home/kloros/out/orchestration/epochs/gpu_canary_20261128.jsonl");
    expect(layout.intentsProcessing).toBe("/home/kloros/out/orchestration/intents/processing");
    expect(layout.promotionsDir).toBe("/home/kloros/out/promotions");
    expect(layout.modelPath).toBe("/home/kloros/models/llm/current");
    expect(() => layout.budgetFile("2026-11-28")).toThrow("YYYYMMDD");
  });
});
