import { existsSync, readFileSync } from "node:fs";
import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { CHROMIUM_MISSING, browserEnv, chromiumExecutable, testdir, until, watchPage } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { type Browser, chromium } from "playwright-core";
import { describe, expect, it, onTestFinished } from "vitest";
import { startDaemon } from "./test-fixtures/daemon-process.ts";

const chromiumPath = chromiumExecutable();
// A missing browser fails the test, naming the install command (.ci/run installs it).

const artifacts = join(import.meta.dirname, "..", "test-artifacts");

const OOM =
  "(EngineCore_DP0 pid=7) ERROR 11-28 03:10:00 [core.py:396] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.\n";

const secondsText = (s: number) => `${Math.round(s * 10) / 10} s`;

describe("the status page in a real browser", () => {
  it("after a night on the simulated host shows what the host says, appends audit events live, and fits a phone", async () => {
    if (!chromiumPath) throw new Error(CHROMIUM_MISSING);
    const site = await createSimSite(await testdir(), { settings: { KLR_CANARY_LOAD_SECONDS: "1" } });
    onTestFinished(() => site.cleanup());
    await site.startProduction();
    const daemon = await startDaemon(site, "INFO 11-28 03:00:00 [api_server.py] Starting vLLM API server 0\n");
    // The daemon's own lines when a wait times out, not the requests of the polling itself. A night takes
    // about 20 s on a quiet machine; 90 s leaves room for a busy one.
    const daemonLines = () =>
      daemon
        .stderr()
        .split("\n")
        .filter((line) => !/"msg":"(incoming request|request completed)"/.test(line))
        .join("\n")
        .slice(-3000);
    const wait = <T>(check: () => T | false | null | undefined | Promise<T | false | null | undefined>, what: string) =>
      until(check, () => `${what}\n${daemonLines()}`, { timeoutMs: 90_000, pollMs: 200 });
    await wait(() => daemon.stderr().includes("Server listening"), "the daemon to listen");
    // The follower starts at the log's end: a line written before it opened the file is not news to it.
    await wait(() => daemon.stderr().includes("following vLLM's log"), "the daemon to follow vLLM's log");
    const base = `http://${site.env.KLR_DAEMON_LISTEN}`;
    const get = async <T>(path: string) => (await (await fetch(`${base}${path}`)).json()) as T;
    type Event = { event: string; run_id: string | null; status?: string; [k: string]: unknown };
    const events = async () => (await get<{ events: Event[] }>("/audit")).events;

    // The night: an OOM line → intent → screening → a quiesced canary, charged, promoted.
    await appendFile(daemon.log, OOM);
    await wait(async () => (await events()).some((e) => e.event === "tuning_decision"), "the tuning decision");

    const browser: Browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"], env: browserEnv() });
    onTestFinished(() => browser.close());
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const problems = watchPage(page);
    const requested: string[] = [];
    page.on("request", (r) => void requested.push(r.url()));

    const response = await page.goto(`${base}/`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()["content-security-policy"]).toContain("default-src 'self'");

    // Each part shows what the host says.
    const status = await get<{
      budget: { seconds_used: number; max_seconds: number; seconds_left: number };
      lock: { held: boolean };
      production: { health: string };
    }>("/status");
    const text = async (selector: string) => ((await page.locator(selector).first().textContent()) ?? "").trim();
    expect(await text('[data-budget="used"]')).toBe(secondsText(status.budget.seconds_used));
    expect(await text('[data-budget="max"]')).toBe(secondsText(status.budget.max_seconds));
    expect(await text('[data-budget="left"]')).toBe(secondsText(status.budget.seconds_left));
    expect(status.budget.seconds_used).toBeGreaterThan(0);
    expect(await text("[data-lock]")).toBe(status.lock.held ? expect.stringContaining("Held by") : "free");
    expect(await text('[data-production="serving"]')).toMatch(status.production.health === "healthy" ? /^yes/ : /^no/);
    const finished = (await events()).filter((e) => e.event === "run_finished");
    const last = finished.at(-1);
    expect(await page.locator("tr[data-run]").count()).toBe(Math.min(finished.length, 10));
    expect(await page.locator("tr[data-run]").first().getAttribute("data-run")).toBe(last?.run_id);
    expect(await text("tr[data-run] .verdict")).toBe(last?.status);
    expect(await page.locator("tr[data-run] svg.phases rect").count()).toBeGreaterThan(2);
    const promotions = (await get<{ promotions: { run_id: string }[] }>("/promotions")).promotions;
    expect(promotions.length).toBeGreaterThan(0);
    expect(await page.locator("tr[data-promotion]").count()).toBe(promotions.length);
    // Nothing applied yet: "current" is what production says it serves.
    const served = (await (await fetch(`http://127.0.0.1:${site.productionPort}/metrics`)).text()).match(
      /gpu_memory_utilization="([\d.]+)"/,
    )?.[1];
    expect(await text("tr[data-promotion] td:nth-child(3)")).toBe(`${served} / small (serving)`); // KLR_WHISPER_SIZE's default
    expect(await page.locator("tr[data-night]").count()).toBe(7);
    expect(await page.locator("form, input, button").count()).toBe(0);

    await mkdir(artifacts, { recursive: true });
    await page.screenshot({ path: join(artifacts, "status-page.png"), fullPage: true });

    // A new audit event appears without a reload.
    await wait(async () => (await text("#live")) === "live", "the page to follow /audit/stream");
    const token = readFileSync(join(site.home, ".kloros", "daemon.token"), "utf8").trim();
    const posted = await fetch(`${base}/intents`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ kind: "oom_max_model_len", subsystem: "gpu_allocation", evidence: "the status page's browser test" }),
    });
    expect(posted.status).toBe(202);
    const id = ((await posted.json()) as { id: string }).id;
    await page.locator("#audit-tail li.new", { hasText: id }).waitFor({ timeout: 15_000 });

    // A phone's width: nothing wider than the screen.
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 }, isMobile: true });
    watchPage(phone, problems, "phone");
    await phone.goto(`${base}/`);
    // A string, run in the page: this package's types know no DOM.
    const overflow = await phone.evaluate<{ scrollWidth: number; clientWidth: number }>(
      "(() => { const root = document.scrollingElement ?? document.documentElement; return { scrollWidth: root.scrollWidth, clientWidth: root.clientWidth }; })()",
    );
    expect(overflow.scrollWidth).toBeLessThanOrEqual(overflow.clientWidth);
    await phone.screenshot({ path: join(artifacts, "status-page-phone.png"), fullPage: true });

    expect(problems).toEqual([]);
    // It asks nothing of anyone but the daemon.
    expect(requested.filter((url) => !url.startsWith(`${base}/`))).toEqual([]);
    expect(existsSync(join(artifacts, "status-page.png"))).toBe(true);

    daemon.child.kill("SIGTERM");
    expect((await daemon.exited).code).toBe(0);
  }, 150_000);
});
