import { setTimeout as sleep } from "node:timers/promises";
import { type CanaryProcess, type CanarySettings, canaryArgv } from "./canary-launcher.ts";
import { ControlError } from "./errors.ts";
import { runArgv } from "./shell.ts";

export interface CanaryUnitOptions {
  /** the transient unit's name, e.g. gpu-canary-canary-<run id> */
  unit: string;
  /** a hard cap on its life: systemd stops it after this many seconds whatever happens */
  runtimeMaxSec: number;
  systemdRun?: string;
  systemctl?: string;
  journalctl?: string;
}

/**
 * Start the canary as a transient systemd unit (`systemd-run --collect -p RuntimeMaxSec=…`), so
 * systemd itself enforces its time limit and owns its processes; stopped with `systemctl stop`,
 * its output read back from the journal.
 */
export async function launchCanaryUnit(settings: CanarySettings, options: CanaryUnitOptions): Promise<CanaryProcess> {
  const argv = canaryArgv(settings);
  const env = { ...settings.env, CUDA_VISIBLE_DEVICES: String(settings.gpuIndex), CUDA_DEVICE_ORDER: "PCI_BUS_ID" };
  const systemctl = options.systemctl ?? "systemctl";
  const started = await runArgv(
    options.systemdRun ?? "systemd-run",
    [
      "--unit",
      options.unit,
      "--collect",
      "--quiet",
      "-p",
      `RuntimeMaxSec=${options.runtimeMaxSec}`,
      ...Object.entries(env).map(([k, v]) => `--setenv=${k}=${v}`),
      "--",
      ...argv,
    ],
    30_000,
  );
  if (started.exitCode !== 0)
    throw new ControlError(
      "CANARY_LAUNCH_FAILED",
      `systemd-run could not start the canary unit ${options.unit}: ${started.output.trim()}`,
      "gpu-canary needs permission to run systemd-run (root, or a polkit rule)",
    );
  const show = await runArgv(systemctl, ["show", "-p", "MainPID", "--value", options.unit], 10_000);
  const pid = Number(show.output.trim().split("\n").at(-1) ?? 0);
  const active = async () => {
    const state = (await runArgv(systemctl, ["is-active", options.unit], 10_000)).output.trim().split("\n").at(-1);
    return state === "active" || state === "activating" || state === "deactivating";
  };
  let done = false;
  let tail = "";
  const readTail = async () => {
    tail = (await runArgv(options.journalctl ?? "journalctl", ["-u", options.unit, "-o", "cat", "--no-pager"], 10_000)).output.slice(
      -64 * 1024,
    );
  };
  const exited = (async () => {
    while (await active()) await sleep(200);
    done = true;
    await readTail();
    return { code: null, signal: null };
  })();
  return {
    pid,
    pgid: pid,
    argv,
    tail: () => tail,
    exited,
    hasExited: () => done,
    // systemd owns the unit (a name the watchdog can stop): there is nothing to hold back.
    release: () => undefined,
    async stop() {
      const result = await runArgv(systemctl, ["stop", options.unit], 120_000);
      if (result.exitCode !== 0)
        throw new ControlError(
          "CANARY_STOP_FAILED",
          `systemctl stop ${options.unit} failed: ${result.output.trim()}`,
          "see `systemctl status` of the unit",
        );
      await exited;
      return { killed: false };
    },
  };
}
