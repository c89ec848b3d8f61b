import { describe, expect, it } from "vitest";
import type { Io } from "./io.ts";
import { logLine, progressSinks, progressStyle } from "./progress.ts";

function fakeIo(terminal: { stdout: boolean; stderr: boolean }) {
  let stderr = "";
  let now = Date.parse("2026-12-06T19:40:01.750Z");
  const io: Io = {
    stdout: () => undefined,
    stderr: (text) => (stderr += text),
    env: {},
    homeDir: "/nonexistent",
    now: () => new Date(now),
    isTTY: terminal.stdout,
    stderrIsTTY: terminal.stderr,
    onSignal: () => () => undefined,
  };
  return { io, stderr: () => stderr, advance: (ms: number) => (now += ms) };
}

describe("progress", () => {
  it("a terminal keeps its '…' lines (none with --json or stdout redirected); anything else gets the log, --json or not", () => {
    expect(progressStyle(fakeIo({ stdout: true, stderr: true }).io, {})).toBe("tty");
    expect(progressStyle(fakeIo({ stdout: true, stderr: true }).io, { json: true })).toBe("none");
    expect(progressStyle(fakeIo({ stdout: false, stderr: true }).io, {})).toBe("none");
    expect(progressStyle(fakeIo({ stdout: true, stderr: false }).io, {})).toBe("log");
    expect(progressStyle(fakeIo({ stdout: false, stderr: false }).io, { json: true })).toBe("log");
  });

  it("on a terminal: the lines as before, no phases, no times", () => {
    const t = fakeIo({ stdout: true, stderr: true });
    const sinks = progressSinks(t.io, "evaluate", "tty");
    expect(sinks.onStep).toBeUndefined();
    sinks.onProgress?.("restoring production");
    logLine(t.io, "evaluate", "tty", "started");
    expect(t.stderr()).toBe("… restoring production\n");
  });

  it("as a log: each step with its UTC time to the second and its phase; lines between steps carry the phase; one record a line", () => {
    const t = fakeIo({ stdout: false, stderr: false });
    const sinks = progressSinks(t.io, "evaluate", "log");
    logLine(t.io, "evaluate", "log", "started");
    sinks.onProgress?.("gates passed");
    sinks.onStep?.("baseline", null);
    t.advance(2000);
    sinks.onStep?.("quiescing", "quiescing production (stop)");
    sinks.onProgress?.("canary died:\n\u001b[31mOOM");
    expect(t.stderr()).toBe(
      [
        "2026-12-06T19:40:01Z evaluate: started",
        "2026-12-06T19:40:01Z evaluate: gates passed",
        "2026-12-06T19:40:01Z evaluate: baseline",
        "2026-12-06T19:40:03Z evaluate: quiescing: quiescing production (stop)",
        "2026-12-06T19:40:03Z evaluate: quiescing: canary died:\\u000a\\u001b[31mOOM",
        "",
      ].join("\n"),
    );
  });

  it("nothing at all when there is no one to tell", () => {
    const t = fakeIo({ stdout: false, stderr: true });
    expect(progressSinks(t.io, "recover", "none")).toEqual({});
    logLine(t.io, "recover", "none", "started");
    expect(t.stderr()).toBe("");
  });
});
