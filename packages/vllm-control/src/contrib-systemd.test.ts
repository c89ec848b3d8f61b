import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { runInNewContext } from "node:vm";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

const contrib = join(import.meta.dirname, "..", "..", "..", "contrib");

type Rule = (action: { id: string; lookup: (key: string) => string | undefined }, subject: { user: string }) => unknown;

/** Evaluate the rules file as polkitd does: its code calls polkit.addRule. */
function loadRules(): Rule[] {
  const rules: Rule[] = [];
  const polkit = {
    Result: { YES: "yes", NO: "no", AUTH_ADMIN: "auth_admin", AUTH_SELF: "auth_self", NOT_HANDLED: "not_handled" },
    addRule: (rule: Rule) => rules.push(rule),
    log: () => undefined,
  };
  runInNewContext(readFileSync(join(contrib, "gpu-canary.polkit.rules"), "utf8"), { polkit });
  return rules;
}

/** What polkit decides: the first rule that answers (undefined: the rule does not decide, the defaults do). */
function decide(id: string, details: Record<string, string>, user = "kloros"): unknown {
  for (const rule of loadRules()) {
    const result = rule({ id, lookup: (key) => details[key] }, { user });
    if (result !== undefined) return result;
  }
  return undefined;
}

const MANAGE_UNITS = "org.freedesktop.systemd1.manage-units";

describe("contrib/gpu-canary.polkit.rules", () => {
  it("lets the service user start, stop and restart production and the Whisper units", () => {
    for (const unit of ["vllm.service", "whisper@small.service", "whisper@large-v3.service"])
      for (const verb of ["start", "stop", "restart"]) expect(decide(MANAGE_UNITS, { unit, verb }), `${verb} ${unit}`).toBe("yes");
  });

  it("says nothing about transient units, other units, other verbs or other users", () => {
    // systemd >= v257 names a transient unit to polkit, with the verb start; before, neither.
    expect(decide(MANAGE_UNITS, { unit: "gpu-canary-x.service", verb: "start" })).toBeUndefined();
    expect(decide(MANAGE_UNITS, { unit: "gpu-canary-watchdog-r1.service", verb: "start" })).toBeUndefined();
    expect(decide(MANAGE_UNITS, {})).toBeUndefined();
    expect(decide(MANAGE_UNITS, { unit: "sshd.service", verb: "stop" })).toBeUndefined();
    for (const verb of ["kill", "reload", "reset-failed", "set-property", "freeze"])
      expect(decide(MANAGE_UNITS, { unit: "vllm.service", verb }), verb).toBeUndefined();
    expect(decide(MANAGE_UNITS, { unit: "vllm.service", verb: "stop" }, "alice")).toBeUndefined();
    expect(decide("org.freedesktop.login1.reboot", {})).toBeUndefined();
  });

  it("refuses the service user any change to unit files", () => {
    expect(decide("org.freedesktop.systemd1.manage-unit-files", { unit: "vllm.service", verb: "enable" })).toBe("no");
    expect(decide("org.freedesktop.systemd1.manage-unit-files", {}, "alice")).toBeUndefined();
  });
});

/** The [Service] section's settings, each key with all its values. */
function serviceSettings(text: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) section = line;
    else if (section === "[Service]" && line && !line.startsWith("#")) {
      const [key = "", ...value] = line.split("=");
      settings.set(key, [...(settings.get(key) ?? []), value.join("=")]);
    }
  }
  return settings;
}

describe("contrib/gpu-canaryd.service", () => {
  const text = readFileSync(join(contrib, "gpu-canaryd.service"), "utf8");
  const settings = serviceSettings(text);

  it("lets a canary started inside it write vLLM's caches and its own /tmp", () => {
    const writable = (settings.get("ReadWritePaths") ?? []).flatMap((v) => v.split(/\s+/));
    for (const path of ["/home/kloros/.kloros", "/home/kloros/out", "/home/kloros/.cache", "/home/kloros/.triton"])
      expect(writable, path).toContain(path);
    expect(settings.get("PrivateTmp")).toEqual(["true"]);
  });

  it("can reach the user's own manager for systemd-run --user: /run/user visible, unix sockets allowed", () => {
    // true or tmpfs would hide /run/user/<uid>/systemd/private.
    expect(settings.get("ProtectHome")).toEqual(["read-only"]);
    expect(settings.get("RestrictAddressFamilies")?.[0]?.split(/\s+/)).toContain("AF_UNIX");
    expect(settings.get("PrivateUsers")).toBeUndefined();
  });

  it("is a unit systemd accepts (systemd-analyze verify, where installed)", async (ctx) => {
    const probe = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
    if (probe.status !== 0) ctx.skip();
    // ExecStart is /usr/bin/env gpu-canaryd: verify needs /usr/bin/env, not gpu-canaryd installed.
    const dir = await testdir();
    const unit = join(dir, "gpu-canaryd.service");
    await writeFile(unit, text);
    const verified = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
    expect(verified.stderr).toBe("");
    expect(verified.status).toBe(0);
  });
});
