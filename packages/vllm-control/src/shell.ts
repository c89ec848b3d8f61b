export interface CommandResult {
  exitCode: number | undefined;
  output: string;
  timedOut: boolean;
}

/**
 * Run one of the operator's configured commands (KLR_PRODUCTION_*_COMMAND, KLR_WHISPER_*_COMMAND)
 * with `sh -c`: they are the operator's configuration. Nothing from outside it (HTTP bodies, log
 * lines, candidates) is ever put into the text; values travel in the environment.
 */
export async function runOperatorCommand(
  command: string,
  options: { env?: Record<string, string>; timeoutMs: number },
): Promise<CommandResult> {
  const { execa } = await import("execa");
  const result = await execa("sh", ["-c", command], {
    reject: false,
    all: true,
    timeout: options.timeoutMs,
    env: options.env ?? {},
    stdin: "ignore",
  });
  return { exitCode: result.exitCode, output: (result.all ?? "").slice(-4000), timedOut: result.timedOut };
}

/** Run an executable with an argument array (`env` adds to this process's environment). */
export async function runArgv(
  file: string,
  args: readonly string[],
  timeoutMs: number,
  env?: Record<string, string>,
): Promise<CommandResult> {
  const { execa } = await import("execa");
  const result = await execa(file, args, { reject: false, all: true, timeout: timeoutMs, stdin: "ignore", ...(env ? { env } : {}) });
  return { exitCode: result.exitCode, output: (result.all ?? "").slice(-4000), timedOut: result.timedOut };
}
