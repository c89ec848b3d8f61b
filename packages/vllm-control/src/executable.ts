import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";
import { splitCommand } from "./canary-launcher.ts";

/**
 * Where `file` would be found to run, as execve with PATH finds it: itself when it names a path,
 * else the first executable regular file of that name on PATH; null when there is none.
 */
export function findExecutable(file: string, env: Readonly<Record<string, string | undefined>>): string | null {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return statSync(p).isFile();
    } catch {
      return false;
    }
  };
  if (file.includes("/")) return executable(file) ? file : null;
  for (const dir of (env.PATH ?? "").split(delimiter)) if (dir && executable(join(dir, file))) return join(dir, file);
  return null;
}

/**
 * The executable KLR_VLLM_COMMAND starts, looked up on the PATH of `env` (the canary's): its path,
 * or why there is none. `doctor` and the canary_command gate ask the same question this way.
 */
export function vllmExecutable(
  vllmCommand: string,
  env: Readonly<Record<string, string | undefined>>,
): { found: string; problem: null } | { found: null; problem: string } {
  const first = splitCommand(vllmCommand, "KLR_VLLM_COMMAND")[0] ?? "";
  const found = findExecutable(first, env);
  if (found) return { found, problem: null };
  return {
    found: null,
    problem: `${first}, the first word of KLR_VLLM_COMMAND, is not an executable${first.includes("/") ? "" : " on PATH"}`,
  };
}
