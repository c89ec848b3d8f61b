import { spawn, spawnSync } from "node:child_process";
import { open, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir, tsNodeArgs } from "@gpu-canary/testing";
import { freePort } from "@gpu-canary/vllm-sim";
import { describe, expect, it } from "vitest";

const bin = join(import.meta.dirname, "bin.ts");
const hasScript = spawnSync("script", ["--version"]).status === 0;

describe("gpu-canaryd", () => {
  it("listens on KLR_DAEMON_LISTEN, answers /healthz and exits 0 on SIGTERM; the shell's own lines in the env file are warnings", async () => {
    const home = await testdir();
    // The env file is shared with the wider system: its shell lines must not stop the daemon.
    await writeFile(join(home, ".kloros_env"), "alias ll='ls -l'\nKLR_CANARY_MODE=predictive\n");
    const port = freePort();
    const child = spawn(process.execPath, tsNodeArgs(bin), {
      env: { ...process.env, KLR_HOME: home, KLR_DAEMON_LISTEN: `127.0.0.1:${port}` },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    // Wait for the daemon's own "listening" log line (startup under a loaded CI can take seconds).
    const deadline = Date.now() + 50_000;
    while (!stderr.includes("Server listening") && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    const body: unknown = await (await fetch(`http://127.0.0.1:${port}/healthz`)).json();
    expect(body).toMatchObject({ ok: true });
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
    expect(stderr).toContain('"msg":"stopping"');
    // Piped (not a terminal, not the journal): one JSON object a line, readable without pino's tables.
    const lines = stderr.trim().split("\n");
    for (const line of lines) {
      expect(JSON.parse(line)).toMatchObject({
        level: expect.stringMatching(/^(trace|debug|info|warn|error|fatal)$/),
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
        msg: expect.any(String),
      });
    }
    expect(lines.map((line) => (JSON.parse(line) as { level: string }).level)).toContain("info");
    const warned = lines.map((line) => JSON.parse(line) as { level: string; msg: string }).find((l) => l.level === "warn");
    expect(warned?.msg).toContain(`${join(home, ".kloros_env")}:1`);
  }, 60_000);

  it("refuses bad settings with exit 2 and a JSON log line naming the variable", async () => {
    const home = await testdir();
    const child = spawn(process.execPath, tsNodeArgs(bin), {
      env: { ...process.env, KLR_HOME: home, KLR_DAEMON_LISTEN: "nowhere" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    expect(code).toBe(2);
    expect(JSON.parse(stderr.trim().split("\n")[0] ?? "")).toMatchObject({
      level: "error",
      time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      msg: expect.stringContaining("KLR_DAEMON_LISTEN"),
      code: "SETTINGS_INVALID",
    });
  }, 30_000);

  it("logs to the journal (JOURNAL_STREAM names its stderr) as JSON lines led by the syslog priority journald keeps", async () => {
    const home = await testdir();
    const log = join(home, "journal-stream");
    const out = await open(log, "w");
    const { dev, ino } = await out.stat({ bigint: true });
    const child = spawn(process.execPath, tsNodeArgs(bin), {
      env: { ...process.env, KLR_HOME: home, KLR_DAEMON_LISTEN: "nowhere", JOURNAL_STREAM: `${dev}:${ino}` },
      stdio: ["ignore", "ignore", out.fd],
    });
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    await out.close();
    expect(code).toBe(2);
    const line = (await readFile(log, "utf8")).split("\n")[0] ?? "";
    // journald takes "<3>" off as PRIORITY=3 (err): `journalctl -p err` finds it, `-o cat` shows the JSON.
    expect(line.startsWith('<3>{"level":"error"')).toBe(true);
    expect(JSON.parse(line.slice(3))).toMatchObject({ level: "error", msg: expect.stringContaining("KLR_DAEMON_LISTEN") });
  }, 30_000);

  it("logs to a terminal as lines a person reads (pino-pretty), not JSON", async (context) => {
    if (!hasScript) context.skip("util-linux `script` is not installed: it gives the daemon a pseudo-terminal");
    const home = await testdir();
    // util-linux `script` gives the daemon a pseudo-terminal as its stderr, as a shell would.
    const command = [process.execPath, ...tsNodeArgs(bin)].map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(" ");
    const child = spawn("script", ["-qec", command, "/dev/null"], {
      env: { ...process.env, KLR_HOME: home, KLR_DAEMON_LISTEN: "nowhere", NO_COLOR: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
    expect(code).toBe(2);
    expect(output).toMatch(
      /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [+-]\d{4}\] .*ERROR.* \(gpu-canaryd\/\d+\): .*invalid setting: KLR_DAEMON_LISTEN/m,
    );
    expect(output).toMatch(/code.*: "SETTINGS_INVALID"/);
    expect(output).not.toContain('{"level"');
  }, 30_000);
});
