import { setTimeout as sleep } from "node:timers/promises";
import { type CanaryProcess, type CanarySettings, canaryArgv } from "./canary-launcher.ts";
import { ControlError } from "./errors.ts";
import { runArgv } from "./shell.ts";
import { hostLaunchFacts, userManagerRuntimeDir } from "./watchdog-launch.ts";

export interface CanaryUnitOptions {
  /** the transient unit's name, e.g. gpu-canary-canary-<run id> */
  unit: string;
  /** a hard cap on its life: systemd stops it after this many seconds whatever happens */
  runtimeMaxSec: number;
  /** the user manager's runtime folder (default: $XDG_RUNTIME_DIR or /run/user/<uid>, when the manager runs there) */
  runtimeDir?: string;
  systemdRun?: string;
  systemctl?: string;
  journalctl?: string;
}

/**
 * Start the canary as a transient unit of the user's own manager (`systemd-run --user --collect -p
 * RuntimeMaxSec=…`), so systemd itself enforces its time limit and owns its processes, with no root
 * and no polkit rule; stopped with `systemctl --user stop`, its output read back from the journal.
 * The user's unit reaches the GPU through the device nodes' own permissions (/dev/nvidia* are
 * 0666 by default; where a host restricts them to a group, the user must be in it).
 */
export async function launchCanaryUnit(settings: CanarySettings, options: CanaryUnitOptions): Promise<CanaryProcess> {
  const argv = canaryArgv(settings);
  const env = { ...settings.env, CUDA_VISIBLE_DEVICES: String(settings.gpuIndex), CUDA_DEVICE_ORDER: "PCI_BUS_ID" };
  const facts = hostLaunchFacts();
  const runtimeDir = options.runtimeDir ?? userManagerRuntimeDir(facts);
  if (runtimeDir === null)
    throw new ControlError(
      "CANARY_LAUNCH_FAILED",
      `no user manager to start the canary unit ${options.unit} in (${facts.runtimeDir ?? `/run/user/${facts.uid}`}/systemd/private is missing)`,
      `enable lingering so the user's manager runs without a session: \`loginctl enable-linger ${facts.user ?? "$USER"}\``,
    );
  // A service has no $XDG_RUNTIME_DIR of its own: --user finds the manager through it.
  const managerEnv = { XDG_RUNTIME_DIR: runtimeDir };
  const systemctl = (args: string[], timeoutMs: number) =>
    runArgv(options.systemctl ?? "systemctl", ["--user", ...args], timeoutMs, managerEnv);
  const started = await runArgv(
    options.systemdRun ?? "systemd-run",
    [
      "--user",
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
    managerEnv,
  );
  if (started.exitCode !== 0)
    throw new ControlError(
      "CANARY_LAUNCH_FAILED",
      `systemd-run --user could not start the canary unit ${options.unit}: ${started.output.trim()}`,
      `check the user manager (\`systemctl --user status\`) and that lingering is on (\`loginctl enable-linger ${facts.user ?? "$USER"}\`)`,
    );
  const show = await systemctl(["show", "-p", "MainPID", "--value", options.unit], 10_000);
  const pid = Number(show.output.trim().split("\n").at(-1) ?? 0);
  const active = async () => {
    const state = (await systemctl(["is-active", options.unit], 10_000)).output.trim().split("\n").at(-1);
    return state === "active" || state === "activating" || state === "deactivating";
  };
  let done = false;
  let tail = "";
  const readTail = async () => {
    // --user-unit, not --user -u: without persistent storage a user unit's lines are in the system
    // journal, which --user does not read (the systemd-journal group does).
    tail = (
      await runArgv(options.journalctl ?? "journalctl", ["--user-unit", options.unit, "-o", "cat", "--no-pager"], 10_000)
    ).output.slice(-64 * 1024);
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
      const result = await systemctl(["stop", options.unit], 120_000);
      if (result.exitCode !== 0)
        throw new ControlError(
          "CANARY_STOP_FAILED",
          `systemctl --user stop ${options.unit} failed: ${result.output.trim()}`,
          "see `systemctl --user status` of the unit",
        );
      await exited;
      return { killed: false };
    },
  };
}
