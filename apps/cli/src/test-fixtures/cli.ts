import type { Io } from "../io.ts";
import { runCli } from "../program.ts";

/** Run the CLI in-process with captured output, a fixed clock and a chosen environment; `terminal` overrides what is a TTY. */
export async function cli(
  argv: string[],
  env: Record<string, string>,
  now = "2026-11-28T13:40:00Z",
  terminal: Partial<Pick<Io, "isTTY" | "stderrIsTTY">> = {},
) {
  let stdout = "";
  let stderr = "";
  const io: Io = {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env,
    homeDir: env.KLR_HOME ?? "/nonexistent-home",
    now: () => new Date(now),
    isTTY: false,
    // As a terminal with stdout captured: no progress lines unless a test runs the CLI as a process.
    stderrIsTTY: true,
    onSignal: () => () => undefined,
    ...terminal,
  };
  const code = await runCli(argv, io);
  return {
    code,
    stdout,
    stderr,
    json: () => JSON.parse(stdout) as Record<string, unknown> & { error?: { code: string; message: string; hint: string } },
  };
}
