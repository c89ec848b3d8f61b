import { execFileSync } from "node:child_process";
import type { Page } from "playwright-core";

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

/**
 * What went wrong in a page, collected as it happens: console errors, uncaught exceptions and failed
 * requests, each prefixed with `label` (e.g. "phone") when given. A test expects the list empty.
 */
export function watchPage(page: Page, problems: string[] = [], label = ""): string[] {
  const prefix = label === "" ? "" : `${label} `;
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`${prefix}console: ${m.text()}`);
  });
  page.on("pageerror", (e) => void problems.push(`${prefix}page error: ${e.message}`));
  page.on("requestfailed", (r) => void problems.push(`${prefix}request failed: ${r.url()}`));
  return problems;
}
