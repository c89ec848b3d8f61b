import { accessSync, constants } from "node:fs";
import { type Config, layoutFor, loadConfig } from "@gpu-canary/config";
import { messageOf } from "@gpu-canary/errors";
import { crossesMidnight, nightLabel, windowAt } from "@gpu-canary/policy";
import { type LaunchFacts, chooseWatchdogLaunch, hostLaunchFacts } from "@gpu-canary/vllm-control";
import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { vllmConfigCheck } from "./doctor-vllm-config.ts";
import { systemctl } from "./systemctl.ts";
import { type Settings, gpuLockFor, hostEnv } from "../settings.ts";

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  fix: string | null;
  /** passes, but the operator should know (shown as WARN; doctor still exits 0) */
  warning?: true;
}

/** The environment commands run with: this process's, with the settings' environment over it. */
const processEnv = (io: Io): Record<string, string> =>
  Object.fromEntries(Object.entries({ ...process.env, ...io.env }).filter((e): e is [string, string] => e[1] !== undefined));

const hintOf = (error: unknown) =>
  typeof error === "object" && error !== null && "hint" in error && typeof error.hint === "string" ? error.hint : null;

async function check(
  name: string,
  work: () => { ok: boolean; detail: string; fix?: string | null } | Promise<{ ok: boolean; detail: string; fix?: string | null }>,
  fallbackFix: string,
): Promise<Check> {
  try {
    const r = await work();
    return { name, ok: r.ok, detail: r.detail, fix: r.ok ? null : (r.fix ?? fallbackFix) };
  } catch (error) {
    return { name, ok: false, detail: messageOf(error), fix: hintOf(error) ?? fallbackFix };
  }
}

/** The checklist's prerequisites and configuration, and whether the limits can work together. */
export async function doctorChecks(settings: Settings, io: Io): Promise<Check[]> {
  const { config } = settings;
  const env = hostEnv(io);
  const spica = await import("@gpu-canary/spica-evaluator");
  const { createGpuProbe } = await import("@gpu-canary/gpu-probe");
  const probe = createGpuProbe({ executable: config.nvidiaSmi, env });
  const checks: Check[] = [
    {
      name: "settings",
      ok: true,
      detail: `all KLR_* settings valid${settings.envFile ? ` (env file ${settings.envFile})` : ""}`,
      fix: null,
    },
  ];
  checks.push(
    await check(
      "home_writable",
      () => {
        accessSync(config.home, constants.W_OK);
        return { ok: true, detail: `${config.home} exists and is writable` };
      },
      `create KLR_HOME (${config.home}) and make it writable by this user`,
    ),
  );
  checks.push(
    await check(
      "nvidia_smi",
      async () => {
        const report = await probe.report();
        const prod = report.gpus.find((g) => g.index === config.productionGpuId);
        if (!prod)
          return {
            ok: false,
            detail: `nvidia-smi works but reports no GPU ${config.productionGpuId} (KLR_PRODUCTION_GPU_ID)`,
            fix: "set KLR_PRODUCTION_GPU_ID to an index `gpu-canary gpus` shows",
          };
        return { ok: true, detail: `${report.gpus.length} GPU(s); production GPU ${prod.index} is ${prod.name}` };
      },
      "install the NVIDIA driver, or point KLR_NVIDIA_SMI at nvidia-smi",
    ),
  );
  if (config.allowSpareGpu) {
    checks.push(
      await check(
        "spare_gpu",
        async () => {
          const gpu = (await probe.queryGpus()).gpus.find((g) => g.index === config.spareGpuId);
          return gpu
            ? { ok: true, detail: `spare GPU ${gpu.index} is ${gpu.name}` }
            : { ok: false, detail: `no GPU ${config.spareGpuId} (KLR_SPARE_GPU_ID)` };
        },
        "set KLR_SPARE_GPU_ID to an index `gpu-canary gpus` shows, or KLR_ALLOW_SPARE_GPU=false",
      ),
    );
  }
  checks.push(
    await check(
      "model_folder",
      async () => {
        const shape = await spica.readModelShape(config.modelPath);
        const weights = await spica.readWeightBytes(config.modelPath, shape);
        return {
          ok: true,
          detail: `${config.modelPath}: ${shape.layers} layers, ${(weights.bytes / 1024 ** 3).toFixed(2)} GiB of weights (${weights.source})`,
        };
      },
      "KLR_MODEL_PATH must name the Hugging Face folder production serves",
    ),
  );
  checks.push(
    await check(
      "production_serving",
      async () => {
        const { e2eMs } = await spica.productionClient(config).servesCompletion({ timeoutMs: 10_000 });
        return { ok: true, detail: `${config.vllmUrl} served a completion in ${e2eMs.toFixed(0)} ms` };
      },
      `start production vLLM, or set KLR_VLLM_URL (now ${config.vllmUrl}) and KLR_VLLM_API_KEY`,
    ),
  );
  if (config.quiesce === "sleep") checks.push(await sleepModeCheck(config, spica.productionClient(config)));
  checks.push(await managerCheck(config, io));
  checks.push(
    await check(
      "production_config",
      () => vllmConfigCheck(config, processEnv(io)),
      `fix ${config.vllmConfigFile ?? "it"}, or unset KLR_VLLM_CONFIG`,
    ),
  );
  checks.push(
    await check(
      "vllm_command",
      async () => {
        // Run the harmless way (`vllm --version`, `python -c "import vllm"`): a broken install
        // found only by a canary costs production a stop.
        const { checkVllmCommand } = await import("@gpu-canary/vllm-control");
        return checkVllmCommand(config.vllmCommand, processEnv(io));
      },
      "set KLR_VLLM_COMMAND to how vLLM is started, e.g. /opt/vllm/.venv/bin/python3 -m vllm.entrypoints.openai.api_server",
    ),
  );
  checks.push(watchdogLaunchCheck(hostLaunchFacts(processEnv(io))));
  checks.push(
    await check(
      "canary_port",
      async () => {
        const { portState } = await import("@gpu-canary/vllm-control");
        const port = await portState(config.canaryPort);
        return port.free
          ? { ok: true, detail: `port ${config.canaryPort} is free for the canary` }
          : { ok: false, detail: port.description };
      },
      "stop what holds KLR_CANARY_PORT, or choose another port",
    ),
  );
  checks.push(
    await check(
      "whisper_commands",
      () => {
        const both = Boolean(config.whisperStopCommand) && Boolean(config.whisperStartCommand);
        const none = !config.whisperStopCommand && !config.whisperStartCommand;
        if (both) return { ok: true, detail: "Whisper's size is exercised for real during canaries" };
        if (none)
          return {
            ok: true,
            detail: "Whisper commands not set: canaries run beside the current Whisper; promotions say whisper_verified: false",
          };
        return { ok: false, detail: "only one of KLR_WHISPER_STOP_COMMAND and KLR_WHISPER_START_COMMAND is set" };
      },
      "set both, or neither",
    ),
  );
  checks.push(...(await stateChecks(settings, io)));
  checks.push(...(await limitChecks(settings, io)));
  return checks;
}

/** vLLM serves its sleep endpoints only when started for it: a quiesce by sleep would fail at the first run. */
async function sleepModeCheck(config: Config, client: { isSleeping(timeoutMs?: number): Promise<boolean> }): Promise<Check> {
  const fix =
    "start production vLLM with VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode (contrib/vllm-sleep-mode.md), or set KLR_QUIESCE=stop";
  return check(
    "sleep_mode",
    async () => {
      try {
        const sleeping = await client.isSleeping(5000);
        return { ok: true, detail: `production answers /is_sleeping (${sleeping ? "asleep" : "awake"}): KLR_QUIESCE=sleep can work` };
      } catch (error) {
        if ((error as { status?: number }).status === 404)
          return { ok: false, detail: `${config.vllmUrl}/is_sleeping is not there: production was started without sleep mode`, fix };
        throw error;
      }
    },
    fix,
  );
}

async function managerCheck(config: Config, io: Io): Promise<Check> {
  return check(
    "production_manager",
    async () => {
      if (config.serviceManager === "command") {
        const missing = [
          ...(config.productionStopCommand ? [] : ["KLR_PRODUCTION_STOP_COMMAND"]),
          ...(config.productionStartCommand ? [] : ["KLR_PRODUCTION_START_COMMAND"]),
        ];
        return missing.length === 0
          ? { ok: true, detail: "production is stopped and started by KLR_PRODUCTION_STOP_COMMAND / _START_COMMAND" }
          : { ok: false, detail: `the command manager needs ${missing.join(" and ")}` };
      }
      // The caller's environment (its PATH finds systemctl).
      const shown = await systemctl(["show", "-p", "LoadState", "--value", config.vllmService], processEnv(io));
      const state = shown.stdout.trim();
      return state === "loaded"
        ? { ok: true, detail: `systemd unit ${config.vllmService} is loaded` }
        : { ok: false, detail: `systemd unit ${config.vllmService}: ${state || shown.problem || "unknown"}` };
    },
    "set KLR_VLLM_SERVICE to production's unit, or KLR_SERVICE_MANAGER=command with its stop and start commands",
  );
}

async function stateChecks(settings: Settings, io: Io): Promise<Check[]> {
  const { config, layout } = settings;
  const spica = await import("@gpu-canary/spica-evaluator");
  const { budget, rate } = spica.policyOf(config, layout, io.now);
  const night = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, io.now()).night;
  return Promise.all([
    check(
      "lock_file",
      async () => {
        const s = await (await gpuLockFor(settings, io, "gpu-canary doctor")).status();
        if (s.state === "unreadable")
          return {
            ok: false,
            detail: `${layout.gpuLock}: ${s.reason}`,
            fix: s.hint ?? "see `gpu-canary lock status`",
          };
        if (s.awaitsRecovery) return { ok: false, detail: `a crashed run awaits recovery: ${s.reason}`, fix: "`gpu-canary recover`" };
        return { ok: true, detail: `the GPU lock is ${s.state}` };
      },
      "see `gpu-canary lock status`",
    ),
    check(
      "budget_file",
      async () => {
        const s = await budget.status(night);
        return { ok: true, detail: `night of ${nightLabel(night)}: ${s.secondsUsed} s used of ${s.maxSeconds} s` };
      },
      `gpu-canary budget reset --yes --date ${night}`,
    ),
    check(
      "rate_limits_file",
      async () => {
        await rate.statusAll(config.subsystems);
        return { ok: true, detail: `${layout.rateLimits} is readable` };
      },
      `repair or remove ${layout.rateLimits}`,
    ),
    check(
      "vllm_seen_file",
      async () => {
        const seen = await spica.readVllmSeen(layout.vllmSeen);
        return { ok: true, detail: seen ? `last seen vLLM ${seen.version ?? "?"} at ${seen.seen_at}` : "no vLLM seen yet" };
      },
      `remove ${layout.vllmSeen}`,
    ),
  ]);
}

/** Can the limits work together: the worst case within the budget and the window, the measured restore within the SLA. */
async function limitChecks(settings: Settings, io: Io): Promise<Check[]> {
  const { config, layout } = settings;
  const { createAuditFeed } = await import("@gpu-canary/audit-feed");
  const { loggedProductionStart, worstCase } = await import("@gpu-canary/spica-evaluator");
  const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone, now: io.now });
  const logged = await loggedProductionStart(config);
  // A stopped production restarts as it last started; a sleeping one only wakes.
  const worst = await worstCase(audit, config, io.now(), config.quiesce === "stop" ? logged : null);
  const window = windowAt(config.maintenanceWindow, config.maintenanceTimeZone, io.now());
  const windowSeconds = (window.closesAt.getTime() - window.opensAt.getTime()) / 1000;
  const spare = config.allowSpareGpu;
  const quiescedNote = spare ? " (canaries use the spare GPU: quiesced runs are not needed)" : "";
  return [
    {
      name: "worst_case_fits_budget",
      ok: spare || worst.totalSeconds <= config.maxDowntimeSeconds,
      detail: `a quiesced run's worst case is ${worst.totalSeconds} s (${worst.basis}) against a budget of ${config.maxDowntimeSeconds} s a night${quiescedNote}`,
      fix:
        spare || worst.totalSeconds <= config.maxDowntimeSeconds
          ? null
          : "raise KLR_GPU_MAINTENANCE_MAX_DOWNTIME, lower KLR_CANARY_TIMEOUT, use KLR_QUIESCE=sleep for faster restores, or a spare GPU (KLR_ALLOW_SPARE_GPU=true)",
    },
    {
      name: "worst_case_fits_window",
      ok: worst.totalSeconds <= windowSeconds,
      detail: `the window ${window.spec} lasts ${windowSeconds} s; the worst case needs ${worst.totalSeconds} s`,
      fix: worst.totalSeconds <= windowSeconds ? null : "widen KLR_GPU_MAINTENANCE_WINDOW",
    },
    {
      name: "restore_within_sla",
      ok: spare || worst.restoreSeconds <= config.restoreSlaSeconds,
      detail: worst.restoreMeasured
        ? `restores take ${worst.restoreSeconds} s (${worst.basis.split(" + ").find((p) => p.startsWith("restore")) ?? "default"}) against the SLA of ${config.restoreSlaSeconds} s${quiescedNote}`
        : `not measured yet: until a quiesced run (or \`gpu-canary recover\`) restores production, the SLA of ${config.restoreSlaSeconds} s stands in for it — a real vLLM takes 30–120 s to load; time \`systemctl restart\` of production once to know${quiescedNote}`,
      fix:
        spare || worst.restoreSeconds <= config.restoreSlaSeconds
          ? null
          : `production needs longer than KLR_RESTORE_SLA to come back from a stop: use KLR_QUIESCE=sleep (vLLM's sleep mode wakes in seconds), a spare GPU, or raise KLR_RESTORE_SLA`,
    },
    canaryTimeoutCheck(config, worst, logged),
    ...(crossesMidnight(config.maintenanceWindow) ? [midnightWarning(window.spec, window.night)] : []),
  ];
}

/**
 * The checklist reads tonight's budget as gpu_budget_$(date +%Y%m%d).json; a night is named by
 * the day its window opened, so after midnight that command reads the next night's (empty) file.
 */
function midnightWarning(spec: string, night: string): Check {
  return {
    name: "window_crosses_midnight",
    ok: true,
    warning: true,
    detail: `the window ${spec} crosses midnight: a night is named by the day its window opened (now ${nightLabel(night)}), so after midnight \`date +%Y%m%d\` names the wrong night's budget file`,
    fix: "read the night's budget with `gpu-canary budget --json | jq .seconds_used`, which names the night itself",
  };
}

/**
 * Where a run's restore watchdog would run. Detached inside a systemd host it shares the
 * caller's fate (a stop of gpu-canaryd's unit takes it along); the user's manager is used only
 * with lingering (without, it stops at logout).
 */
export function watchdogLaunchCheck(facts: LaunchFacts): Check {
  const name = "watchdog_launch";
  const launch = chooseWatchdogLaunch(facts);
  if (launch.mode === "system")
    return { name, ok: true, detail: "the restore watchdog runs as a transient unit of the system manager (root)", fix: null };
  if (launch.mode === "user") {
    return {
      name,
      ok: true,
      detail: `the restore watchdog runs in the user's own systemd manager (systemd-run --user, ${launch.runtimeDir})`,
      fix: null,
    };
  }
  if (launch.reason === "systemd does not run here")
    return { name, ok: true, detail: "the restore watchdog runs detached, in a session of its own (systemd does not run here)", fix: null };
  return {
    name,
    ok: true,
    warning: true,
    detail: `the restore watchdog would run detached: ${launch.reason}`,
    fix: 'see the guide, "Least privilege under systemd"',
  };
}

/** Time the canary needs beyond loading the model and its load's seconds: health and a warm-up, then the last requests' end. */
const WARM_UP_SECONDS = 5;
const DRAIN_SECONDS = 10;

/**
 * A canary loads the same model production does: a timeout no longer than production's own
 * measured start (a stop's restore) leaves it no time to answer, and every run ends inconclusive.
 */
function canaryTimeoutCheck(
  config: Settings["config"],
  worst: { restoreSeconds: number; restoreMeasured: boolean },
  logged: number | null,
): Check {
  const restarts = config.quiesce === "stop" && worst.restoreMeasured ? worst.restoreSeconds : null;
  const name = "canary_timeout_covers_start";
  if (restarts === null && logged === null)
    return {
      name,
      ok: true,
      detail: `not measured yet: a canary needs production's own start time (its log, KLR_VLLM_LOG, or a quiesced run with KLR_QUIESCE=stop) plus its test within KLR_CANARY_TIMEOUT (${config.canaryTimeoutSeconds} s)`,
      fix: null,
    };
  const start = Math.max(restarts ?? 0, logged ?? 0);
  const test = WARM_UP_SECONDS + config.canaryLoadSeconds + DRAIN_SECONDS;
  const ok = config.canaryTimeoutSeconds >= start + test;
  return {
    name,
    ok,
    detail: `production starts in ${start} s (measured); KLR_CANARY_TIMEOUT is ${config.canaryTimeoutSeconds} s, ${ok ? "enough" : "too little"} to load the same model and test it under load (about ${test} s more: ${WARM_UP_SECONDS} s warm-up, KLR_CANARY_LOAD_SECONDS ${config.canaryLoadSeconds} s, ${DRAIN_SECONDS} s for the last requests)`,
    fix: ok
      ? null
      : `set KLR_CANARY_TIMEOUT to at least ${Math.ceil(start + test)} (or lower KLR_CANARY_LOAD_SECONDS) and KLR_GPU_MAINTENANCE_MAX_DOWNTIME to the worst case it gives, or test on a spare GPU (KLR_ALLOW_SPARE_GPU=true)`,
  };
}

function warnings(checks: Check[]): string {
  const n = checks.filter((c) => c.warning).length;
  return n === 0 ? "" : ` (${n} warning${n === 1 ? "" : "s"})`;
}

export async function runDoctor(options: GlobalOptions, io: Io): Promise<number> {
  const loaded = loadConfig({ env: io.env, homeDir: io.homeDir });
  let checks: Check[];
  if (!loaded.ok) {
    // Broken settings are failed checks here, not a usage error: doctor exists to say what is wrong.
    checks = loaded.errors.map((e) => ({
      name: "settings",
      ok: false,
      detail: e,
      fix: "fix the variable where it comes from: the environment, or the env file ($KLR_HOME/.kloros_env or KLR_ENV_FILE)",
    }));
  } else {
    const settings: Settings = { ...loaded, layout: layoutFor(loaded.config) };
    for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
    checks = await doctorChecks(settings, io);
  }
  const ok = checks.every((c) => c.ok);
  answer(io, options, { ok, checks }, () =>
    [
      ...checks.map(
        (c) => `${c.ok ? (c.warning ? "WARN" : "PASS") : "FAIL"}  ${c.name.padEnd(24)} ${c.detail}${c.fix ? `\n      fix: ${c.fix}` : ""}`,
      ),
      ok ? `All checks passed${warnings(checks)}.` : `${checks.filter((c) => !c.ok).length} check(s) failed${warnings(checks)}.`,
    ].join("\n"),
  );
  return ok ? 0 : 1;
}
