import type { Io } from "../io.ts";
import { runCli } from "../program.ts";

/** Run the CLI in-process with captured output, a fixed clock and a chosen environment. */
export async function cli(argv: string[], env: Record<string, string>, now = "2026-11-28T13:40:00Z") {
  let stdout = "";
  let stderr = "";
  const io: Io = {
    stdout: (text) => (stdout += text),
    stderr: (text) => (stderr += text),
    env,
    homeDir: env.KLR_HOME ?? "/nonexistent-home",
    now: () => new Date(now),
    isTTY: false,
    onSignal: () => () => undefined,
  };
  const code = await runCli(argv, io);
  return {
    code,
    stdout,
    stderr,
    json: () => JSON.parse(stdout) as Record<string, unknown> & { error?: { code: string; message: string; hint: string } },
  };
}
