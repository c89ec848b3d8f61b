import { execFile } from "node:child_process";

/** `systemctl ARGS…`'s answer, or why there is none (its stderr, else the spawn's error); never throws. */
export function systemctl(args: readonly string[], env: Record<string, string>): Promise<{ stdout: string; problem: string }> {
  return new Promise((resolve) => {
    execFile("systemctl", [...args], { timeout: 10_000, env }, (error, stdout, stderr) =>
      resolve({ stdout, problem: error ? stderr.trim() || error.message : "" }),
    );
  });
}
