import { spawn } from "node:child_process";
import { join } from "node:path";
import { testdir, tsNodeArgs } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

const bin = join(import.meta.dirname, "bin.ts");

describe("gpu-canaryd", () => {
  it("listens on KLR_DAEMON_LISTEN, answers /healthz and exits 0 on SIGTERM", async () => {
    const home = await testdir();
    const port = 20000 + Math.floor(Math.random() * 20000);
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
    expect(JSON.parse(stderr.trim().split("\n")[0] ?? "")).toMatchObject({ level: 50, msg: expect.stringContaining("KLR_DAEMON_LISTEN") });
  }, 30_000);
});
