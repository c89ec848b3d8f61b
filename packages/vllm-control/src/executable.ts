import { accessSync, constants, statSync } from "node:fs";
import { delimiter, join } from "node:path";

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
