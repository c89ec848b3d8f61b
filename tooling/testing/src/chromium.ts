import { execFileSync } from "node:child_process";

/** What a test says when no browser is there: CI installs one, a developer may not have. */
export const CHROMIUM_MISSING =
  "chromium is missing: install Debian's chromium (`apt-get install -y chromium`, as .ci/run does) or set CHROMIUM_PATH";

/** Debian's chromium for playwright-core (no browser download): CHROMIUM_PATH, else `chromium` on PATH; null when neither. */
export function chromiumExecutable(): string | null {
  if (process.env.CHROMIUM_PATH) return process.env.CHROMIUM_PATH;
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
}

/**
 * The browser's environment: this process's, without libfaketime. `pnpm test:midnight` moves the
 * clock of gpu-canary's processes; the browser only renders what the daemon wrote, on its own clock.
 */
export function browserEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[1] !== undefined && entry[0] !== "LD_PRELOAD" && !entry[0].startsWith("FAKETIME"),
    ),
  );
}
