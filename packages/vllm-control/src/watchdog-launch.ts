import { existsSync } from "node:fs";
import { userInfo } from "node:os";
import { join } from "node:path";

/**
 * Where the restore watchdog runs, and why:
 * - `system`: a transient unit of the system manager — only for root, who needs no permission for it;
 * - `user`: a transient unit of the user's own manager (`systemd-run --user`): no root, no polkit
 *   rule, and outside the caller's unit, so stopping or killing gpu-canaryd does not take it along;
 * - `detached`: a process in a session of its own, where no user manager is reachable.
 */
export type WatchdogLaunch = { mode: "system" } | { mode: "user"; runtimeDir: string } | { mode: "detached"; reason: string };

/** What the choice rests on (tests pass their own). */
export interface LaunchFacts {
  uid: number;
  /** the user's name, for the hint (null: no passwd entry) */
  user: string | null;
  /** $XDG_RUNTIME_DIR, if set */
  runtimeDir: string | undefined;
  /** $INVOCATION_ID is set: this process runs inside a systemd unit */
  inUnit: boolean;
  exists: (path: string) => boolean;
}

export function hostLaunchFacts(env: NodeJS.ProcessEnv = process.env): LaunchFacts {
  let user: string | null = null;
  try {
    user = userInfo().username;
  } catch {
    // a UID without a passwd entry (some containers)
  }
  return {
    uid: process.getuid?.() ?? -1,
    user,
    runtimeDir: env.XDG_RUNTIME_DIR || undefined,
    inUnit: Boolean(env.INVOCATION_ID),
    exists: existsSync,
  };
}

/**
 * The runtime folder of the user's own manager, when it runs: systemd-run --user and systemctl
 * --user connect to its private socket there, `$XDG_RUNTIME_DIR/systemd/private`. A service
 * started by the system manager has no $XDG_RUNTIME_DIR: the folder is /run/user/<uid>, which
 * exists while the user has a session or lingering is on.
 */
export function userManagerRuntimeDir(facts: LaunchFacts): string | null {
  const dir = facts.runtimeDir ?? `/run/user/${facts.uid}`;
  return facts.exists(join(dir, "systemd", "private")) ? dir : null;
}

/** Lingering keeps the user's manager running without a session (`loginctl enable-linger USER`). */
export function lingerEnabled(facts: LaunchFacts): boolean | null {
  return facts.user === null ? null : facts.exists(`/var/lib/systemd/linger/${facts.user}`);
}

/**
 * The rule: root → the system manager; a user manager that outlives the session (lingering) → it;
 * else detached. A user manager without lingering stops seconds after the last session ends — an
 * SSH connection that drops kills the run and then, mid-restore, the watchdog meant to survive it.
 */
export function chooseWatchdogLaunch(facts: LaunchFacts): WatchdogLaunch {
  const systemd = facts.exists("/run/systemd/system");
  if (facts.uid === 0 && systemd) return { mode: "system" };
  const runtimeDir = userManagerRuntimeDir(facts);
  if (runtimeDir !== null && lingerEnabled(facts) === true) return { mode: "user", runtimeDir };
  if (!systemd) return { mode: "detached", reason: "systemd does not run here" };
  const dir = facts.runtimeDir ?? `/run/user/${facts.uid}`;
  const linger = facts.user ? `loginctl enable-linger ${facts.user}` : "loginctl enable-linger";
  const why =
    runtimeDir === null
      ? `no user manager for UID ${facts.uid} (${join(dir, "systemd", "private")} is missing)`
      : `the user manager of UID ${facts.uid} stops when its last session ends (lingering is off)`;
  return {
    mode: "detached",
    reason:
      `${why}: enable lingering with \`${linger}\`` +
      // In a unit's cgroup a detached process is stopped along with the unit.
      (facts.inUnit ? "; a detached watchdog stays in this service's cgroup, so stopping the service stops it too" : ""),
  };
}
