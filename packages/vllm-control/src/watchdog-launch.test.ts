import { describe, expect, it } from "vitest";
import { type LaunchFacts, chooseWatchdogLaunch, lingerEnabled, userManagerRuntimeDir } from "./watchdog-launch.ts";

/** A host as the rule sees it: these paths exist, nothing else. */
function facts(over: Partial<LaunchFacts>, paths: string[]): LaunchFacts {
  return { uid: 1001, user: "kloros", runtimeDir: undefined, inUnit: false, exists: (p) => paths.includes(p), ...over };
}

const SYSTEMD = "/run/systemd/system";

describe("where the restore watchdog runs", () => {
  it("in the user's own manager when its socket is there and lingering keeps it: from a login ($XDG_RUNTIME_DIR) or a service (/run/user/<uid>)", () => {
    const LINGER = "/var/lib/systemd/linger/kloros";
    expect(chooseWatchdogLaunch(facts({ runtimeDir: "/run/user/1001" }, [SYSTEMD, LINGER, "/run/user/1001/systemd/private"]))).toEqual({
      mode: "user",
      runtimeDir: "/run/user/1001",
    });
    // Without lingering the manager stops after the last session: a dropped SSH login would take the
    // watchdog along mid-restore. Detached, it survives the logout.
    const session = chooseWatchdogLaunch(facts({ runtimeDir: "/run/user/1001" }, [SYSTEMD, "/run/user/1001/systemd/private"]));
    expect(session).toMatchObject({ mode: "detached" });
    expect(session.mode === "detached" && session.reason).toContain(
      "(lingering is off): enable lingering with `loginctl enable-linger kloros`",
    );
    // gpu-canaryd.service has no $XDG_RUNTIME_DIR; lingering keeps the manager (and its folder) up.
    expect(chooseWatchdogLaunch(facts({ inUnit: true }, [SYSTEMD, LINGER, "/run/user/1001/systemd/private"]))).toEqual({
      mode: "user",
      runtimeDir: "/run/user/1001",
    });
  });

  it("in the system manager only for root, who needs no permission for it", () => {
    expect(chooseWatchdogLaunch(facts({ uid: 0, user: "root" }, [SYSTEMD, "/run/user/0/systemd/private"]))).toEqual({ mode: "system" });
    // Not root: never the system manager, even when it runs.
    expect(chooseWatchdogLaunch(facts({}, [SYSTEMD])).mode).toBe("detached");
  });

  it("detached without a user manager, naming the fix, and the catch inside a unit", () => {
    const noLinger = chooseWatchdogLaunch(facts({ inUnit: true }, [SYSTEMD]));
    expect(noLinger).toMatchObject({ mode: "detached" });
    expect(noLinger.mode === "detached" && noLinger.reason).toContain("/run/user/1001/systemd/private is missing");
    expect(noLinger.mode === "detached" && noLinger.reason).toContain("loginctl enable-linger kloros");
    expect(noLinger.mode === "detached" && noLinger.reason).toContain("stopping the service stops it too");
    // A $XDG_RUNTIME_DIR without a manager behind it (su, containers) is not a user manager.
    expect(chooseWatchdogLaunch(facts({ runtimeDir: "/tmp/xdg" }, [SYSTEMD])).mode).toBe("detached");
    expect(chooseWatchdogLaunch(facts({ uid: 0, user: "root" }, []))).toEqual({ mode: "detached", reason: "systemd does not run here" });
  });

  it("tells whether lingering is on", () => {
    expect(lingerEnabled(facts({}, ["/var/lib/systemd/linger/kloros"]))).toBe(true);
    expect(lingerEnabled(facts({}, []))).toBe(false);
    expect(lingerEnabled(facts({ user: null }, []))).toBeNull();
    expect(userManagerRuntimeDir(facts({ runtimeDir: "/run/user/7" }, ["/run/user/7/systemd/private"]))).toBe("/run/user/7");
  });
});
