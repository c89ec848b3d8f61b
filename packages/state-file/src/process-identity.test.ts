import { deadPid } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createProcessInspector, isValidPid, parseProcStat } from "./process-identity.ts";

const stat = (comm: string, state: string, start: string) =>
  `4242 (${comm}) ${state} 1 4242 4242 0 -1 4194304 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 1000 10 18446744073709551615`;

describe("parseProcStat", () => {
  it("reads state and start time even when the command name holds spaces and parentheses", () => {
    expect(parseProcStat(stat("node", "S", "123456"))).toEqual({ state: "S", startTime: "123456" });
    expect(parseProcStat(stat("we (ird) ) name", "R", "99"))).toEqual({ state: "R", startTime: "99" });
    expect(parseProcStat("garbage")).toBeNull();
    expect(parseProcStat("1 (x) S 1 2")).toBeNull();
  });
});

describe("createProcessInspector", () => {
  it("sees this process alive with a start token made of the boot id and its start time", () => {
    const inspector = createProcessInspector();
    const probe = inspector.probe(process.pid);
    expect(probe.state).toBe("alive");
    expect(probe.state === "alive" && probe.startToken).toMatch(/^[0-9a-f-]+:\d+$/);
    expect(inspector.selfToken()).toBe(probe.state === "alive" ? probe.startToken : null);
  });

  it("sees a PID no process has as gone", () => {
    expect(createProcessInspector().probe(deadPid())).toEqual({ state: "dead", why: "gone" });
  });

  it("sees a zombie as dead although kill(pid, 0) would still answer", () => {
    const inspector = createProcessInspector({
      readText: (path) => (path.endsWith("boot_id") ? "b00t\n" : stat("python3", "Z", "5")),
    });
    expect(inspector.probe(77)).toEqual({ state: "dead", why: "zombie" });
  });

  it("changes the token when the PID is reused by a later process", () => {
    let start = "100";
    const inspector = createProcessInspector({ readText: (path) => (path.endsWith("boot_id") ? "b00t" : stat("x", "S", start)) });
    const before = inspector.probe(77);
    start = "200";
    const after = inspector.probe(77);
    expect(before).toEqual({ state: "alive", startToken: "b00t:100" });
    expect(after).toEqual({ state: "alive", startToken: "b00t:200" });
  });

  it("falls back to kill(pid, 0) without /proc, where EPERM means alive", () => {
    const noProc = () => {
      throw Object.assign(new Error("no proc"), { code: "ENOENT" });
    };
    const eperm = createProcessInspector({
      readText: noProc,
      kill: () => {
        throw Object.assign(new Error(), { code: "EPERM" });
      },
    });
    expect(eperm.probe(5)).toEqual({ state: "alive", startToken: null });
    const esrch = createProcessInspector({
      readText: noProc,
      kill: () => {
        throw Object.assign(new Error(), { code: "ESRCH" });
      },
    });
    expect(esrch.probe(5)).toEqual({ state: "dead", why: "gone" });
  });

  it("never probes an invalid PID (0 or -1 would signal a whole group)", () => {
    expect(isValidPid(0)).toBe(false);
    expect(isValidPid(-1)).toBe(false);
    expect(isValidPid(2 ** 31)).toBe(false);
    expect(isValidPid(1.5)).toBe(false);
    expect(createProcessInspector().probe(0).state).toBe("unknown");
  });

  it("assumes alive when /proc/<pid>/stat cannot be read for another reason", () => {
    const inspector = createProcessInspector({
      readText: (path) => {
        if (path.endsWith("boot_id")) return "b";
        throw Object.assign(new Error("io"), { code: "EIO" });
      },
    });
    expect(inspector.probe(9).state).toBe("unknown");
  });
});
