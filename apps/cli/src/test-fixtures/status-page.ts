import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { CHROMIUM_MISSING, browserEnv, chromiumExecutable, until, watchPage } from "@gpu-canary/testing";
import { freePort } from "@gpu-canary/vllm-sim";
import { chromium } from "playwright-core";
import { onTestFinished } from "vitest";

/** Screenshots the tests keep (git-ignored); docs/img holds the copy the README shows. */
export const artifactsDir = join(import.meta.dirname, "..", "..", "test-artifacts");

/** What the status page showed, beside what the daemon's JSON routes said at the same moment. */
export interface PageSeen {
  runRows: number;
  runsFinished: number;
  promotionRows: number;
  promotions: number;
  budgetUsedText: string;
  budgetUsedSeconds: number;
  newestRun: string | null;
  newestRunFinished: string | null;
  problems: string[];
  exitCode: number | null;
  screenshot: string;
}

/**
 * gpu-canaryd on a kept demo's folder, started as the guide says (source its env file, then
 * `gpu-canaryd`) in predictive mode so it stops nothing, and its status page loaded in Debian's
 * chromium: what the page shows, what `/status`, `/audit` and `/promotions` say, and a full-page
 * screenshot. Without chromium it fails, naming the install command (.ci/run installs it).
 */
export async function statusPageOf(envFile: string, screenshotName: string): Promise<PageSeen> {
  const executablePath = chromiumExecutable();
  if (!executablePath) throw new Error(CHROMIUM_MISSING);
  const listen = `127.0.0.1:${freePort()}`;
  const daemon = spawn(
    "bash",
    ["-c", 'source "$1" && KLR_DAEMON_LISTEN="$2" KLR_CANARY_MODE=predictive exec gpu-canaryd', "bash", envFile, listen],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  daemon.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => daemon.on("exit", (code) => resolve(code)));
  onTestFinished(() => void daemon.kill("SIGKILL"));
  const base = `http://${listen}`;
  await until(
    async () => (await fetch(`${base}/healthz`).catch(() => null))?.ok,
    () => `gpu-canaryd on the demo's folder did not answer /healthz\n${stderr.slice(-3000)}`,
    { timeoutMs: 30_000, pollMs: 200 },
  );
  const get = async <T>(path: string) => (await (await fetch(`${base}${path}`)).json()) as T;

  const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"], env: browserEnv() });
  onTestFinished(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems = watchPage(page);
  const response = await page.goto(`${base}/`);
  if (response?.status() !== 200) problems.push(`GET / answered ${response?.status()}`);

  const [status, finished, promotions] = await Promise.all([
    get<{ budget: { seconds_used: number } }>("/status"),
    get<{ events: { run_id: string | null }[] }>("/audit?event=run_finished"),
    get<{ promotions: unknown[] }>("/promotions"),
  ]);
  await mkdir(artifactsDir, { recursive: true });
  const screenshot = join(artifactsDir, screenshotName);
  await page.screenshot({ path: screenshot, fullPage: true });
  const seen: PageSeen = {
    runRows: await page.locator("tr[data-run]").count(),
    runsFinished: finished.events.length,
    promotionRows: await page.locator("tr[data-promotion]").count(),
    promotions: promotions.promotions.length,
    budgetUsedText: ((await page.locator('[data-budget="used"]').first().textContent()) ?? "").trim(),
    budgetUsedSeconds: status.budget.seconds_used,
    newestRun: await page.locator("tr[data-run]").first().getAttribute("data-run"),
    newestRunFinished: finished.events.at(-1)?.run_id ?? null,
    problems,
    exitCode: null,
    screenshot,
  };
  await browser.close();
  daemon.kill("SIGTERM");
  seen.exitCode = await exited;
  return seen;
}
