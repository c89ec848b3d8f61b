import { mkdir, writeFile } from "node:fs/promises";
import { dayOf } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { nightOf } from "@gpu-canary/policy";
import { testdir } from "@gpu-canary/testing";
import { createSimSite } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";
import { watchdogLaunchCheck } from "./doctor.ts";

async function downSite() {
  const site = await createSimSite(await testdir());
  onTestFinished(() => site.cleanup());
  const { config } = requireConfig(loadConfig({ env: site.env, homeDir: site.home }));
  return { ...site, layout: layoutFor(config), config };
}

type Checks = { ok: boolean; checks: { name: string; ok: boolean; detail: string; fix: string | null }[] };

describe("gpu-canary doctor and status", () => {
  it("reports broken settings as failed checks (exit 1), not as a usage error", async () => {
    const site = await downSite();
    const result = await cli(["doctor", "--json"], { ...site.env, KLR_CANARY_PORT: "abc" });
    expect(result.code).toBe(1);
    const doc = result.json() as Checks;
    expect(doc.ok).toBe(false);
    expect(doc.checks.map((c) => c.name)).toEqual(["settings"]);
    expect(doc.checks[0]?.detail).toContain("KLR_CANARY_PORT");
  });

  it("fails what is wrong on the host, each with its fix; says when a measured restore is slower than the SLA", async () => {
    const site = await downSite();
    const env = { ...site.env, KLR_RESTORE_SLA: "5" };
    // An earlier run measured restores of 9 s.
    await mkdir(site.layout.auditDir, { recursive: true });
    const now = new Date();
    const line = (seconds: number) =>
      JSON.stringify({ ts: now.toISOString(), event: "production_restored", run_id: "r-old", host: "h", pid: 1, seconds });
    await writeFile(site.layout.auditFile(dayOf(now, site.config.maintenanceTimeZone)), `${line(9)}\n${line(8.5)}\n`);
    const result = await cli(["doctor", "--json"], env, now.toISOString());
    expect(result.code).toBe(1);
    const checks = (result.json() as Checks).checks;
    const failed = Object.fromEntries(checks.filter((c) => !c.ok).map((c) => [c.name, c]));
    expect(Object.keys(failed).sort()).toEqual(["production_serving", "restore_within_sla"]);
    // The vLLM command was run (`vllm --version`), not only found.
    expect(checks.find((c) => c.name === "vllm_command")?.detail).toMatch(/vllm --version` works: vLLM 0\.11\.0$/);
    expect(failed.restore_within_sla?.detail).toMatch(/restores take 9 s \(restore 9 s \(p95 of 2\)\) against the SLA of 5 s/);
    expect(failed.restore_within_sla?.fix).toContain("KLR_QUIESCE=sleep");
    const text = await cli(["doctor"], env, now.toISOString());
    expect(text.stdout).toMatch(/^PASS {2}settings/m);
    expect(text.stdout).toMatch(/^FAIL {2}production_serving/m);
  }, 30_000);

  it("with KLR_QUIESCE=sleep, fails sleep_mode when production was started without it, with the fix", async () => {
    const sleepCheck = async (sleepMode: boolean) => {
      const site = await createSimSite(await testdir(), { sleepMode, settings: { KLR_QUIESCE: "sleep" } });
      onTestFinished(() => site.cleanup());
      await site.startProduction();
      const checks = ((await cli(["doctor", "--json"], site.env, new Date().toISOString())).json() as Checks).checks;
      return checks.find((c) => c.name === "sleep_mode");
    };
    expect(await sleepCheck(false)).toMatchObject({
      ok: false,
      detail: expect.stringContaining("/is_sleeping is not there: production was started without sleep mode"),
      fix: expect.stringContaining("VLLM_SERVER_DEV_MODE=1 and --enable-sleep-mode"),
    });
    expect(await sleepCheck(true)).toMatchObject({ ok: true, detail: expect.stringContaining("answers /is_sleeping (awake)") });
  }, 90_000);

  it("production_serving passes against a vLLM that refuses requests naming no model (before 0.8)", async () => {
    const site = await createSimSite(await testdir(), { requireModel: true });
    onTestFinished(() => site.cleanup());
    await site.startProduction();
    const checks = ((await cli(["doctor", "--json"], site.env, new Date().toISOString())).json() as Checks).checks;
    expect(checks.find((c) => c.name === "production_serving")).toMatchObject({ ok: true });
  }, 60_000);

  it("says the restore is not measured yet before any run, instead of passing on the assumed SLA silently", async () => {
    const site = await downSite();
    const checks = ((await cli(["doctor", "--json"], site.env, new Date().toISOString())).json() as Checks).checks;
    expect(checks.find((c) => c.name === "restore_within_sla")).toMatchObject({
      ok: true,
      detail: expect.stringContaining(
        "not measured yet: until a quiesced run (or `gpu-canary recover`) restores production, the SLA of 15 s stands in for it",
      ),
    });
  }, 30_000);

  it("names one night in every view: status, doctor, budget and window agree after the window closed", async () => {
    const site = await downSite();
    // 18:14 in Tokyo on 2026-12-02; the 23:00-09:00 window that counts opened on 2026-12-01.
    const now = "2026-12-02T09:14:00Z";
    const env = { ...site.env, KLR_GPU_MAINTENANCE_WINDOW: "23:00-09:00", KLR_GPU_MAINTENANCE_TZ: "Asia/Tokyo" };
    await mkdir(site.layout.maintenanceDir, { recursive: true });
    await writeFile(site.layout.budgetFile("20261201"), '{"seconds_used": 10.77}');
    const status = (await cli(["status", "--json"], env, now)).json() as Record<string, Record<string, unknown>>;
    expect(status.budget).toMatchObject({ date: "20261201", seconds_used: 10.77 });
    expect(status.window).toMatchObject({ open: false, night: "20261201" });
    expect((await cli(["budget", "--json"], env, now)).json()).toMatchObject({ date: "20261201", seconds_used: 10.77 });
    expect((await cli(["window", "--json"], env, now)).json()).toMatchObject({ night: "20261201" });
    const checks = ((await cli(["doctor", "--json"], env, now)).json() as Checks).checks;
    expect(checks.find((c) => c.name === "budget_file")?.detail).toBe("night of 2026-12-01: 10.77 s used of 60 s");
    expect(checks.find((c) => c.name === "window_crosses_midnight")).toMatchObject({
      ok: true,
      warning: true,
      fix: expect.stringContaining("gpu-canary budget --json | jq .seconds_used"),
    });
    const [statusText, budgetText, doctorText, windowText] = await Promise.all(
      ["status", "budget", "doctor", "window"].map(async (c) => (await cli([c], env, now)).stdout),
    );
    for (const text of [statusText, budgetText, doctorText]) {
      expect(text).toContain("night of 2026-12-01");
      expect(text).not.toMatch(/tonight|20261202|night of 2026-12-02|T\d\d:\d\d:\d\dZ/);
    }
    expect(statusText).toMatch(/^Window: {6}23:00-09:00 Asia\/Tokyo closed, opens 2026-12-02 23:00 GMT\+9$/m);
    expect(statusText).toMatch(/^Budget: {6}10\.77 s used of 60 s, night of 2026-12-01 \(49\.23 s left\)$/m);
    expect(doctorText).toMatch(/^WARN {2}window_crosses_midnight/m);
    // The window shows the next opening (2026-12-02 23:00) and the night that counts until then.
    expect(windowText).toMatch(/^Night: {2}2026-12-01 \(the last window's, until the next opens/m);
  }, 30_000);

  it("status answers (exit 0) with an unreadable part named, the rest still shown", async () => {
    const site = await downSite();
    const now = new Date();
    const night = nightOf(site.config.maintenanceWindow, site.config.maintenanceTimeZone, now);
    await mkdir(site.layout.maintenanceDir, { recursive: true });
    await writeFile(site.layout.budgetFile(night), "{broken");
    const result = await cli(["status", "--json"], site.env, now.toISOString());
    expect(result.code).toBe(0);
    const doc = result.json() as Record<string, Record<string, unknown>>;
    expect(Object.keys(doc)).toEqual(["window", "budget", "lock", "rate_limits", "mode", "gpus", "production"]);
    expect(doc.budget?.error).toMatchObject({ code: "BUDGET_UNREADABLE" });
    expect(doc.lock).toMatchObject({ state: "free" });
    expect(doc.production).toMatchObject({ health: "refused" });
    expect(Array.isArray(doc.gpus) && doc.gpus.length).toBe(2);
    const text = await cli(["status"], site.env, now.toISOString());
    expect(text.stdout).toMatch(/^Budget: {6}unavailable: /m);
  }, 30_000);
});

describe("doctor's watchdog_launch check", () => {
  const facts = (uid: number, files: string[], runtimeDir?: string) => ({
    uid,
    user: uid === 0 ? "root" : "kloros",
    runtimeDir,
    inUnit: true,
    exists: (path: string) => files.includes(path),
  });
  it("passes the system manager for root and the user's manager with lingering; warns when the watchdog would share the service's fate", () => {
    expect(watchdogLaunchCheck(facts(0, ["/run/systemd/system"]))).toMatchObject({
      ok: true,
      detail: expect.stringContaining("system manager"),
    });
    const user = facts(1000, ["/run/systemd/system", "/run/user/1000/systemd/private", "/var/lib/systemd/linger/kloros"]);
    expect(watchdogLaunchCheck(user)).toEqual({
      name: "watchdog_launch",
      ok: true,
      detail: "the restore watchdog runs in the user's own systemd manager (systemd-run --user, /run/user/1000)",
      fix: null,
    });
    // Without lingering the user's manager stops at logout: the watchdog runs detached, said so.
    expect(watchdogLaunchCheck(facts(1000, ["/run/systemd/system", "/run/user/1000/systemd/private"]))).toMatchObject({
      ok: true,
      warning: true,
      detail: expect.stringContaining("(lingering is off): enable lingering with `loginctl enable-linger kloros`"),
    });
    expect(watchdogLaunchCheck(facts(1000, ["/run/systemd/system"]))).toMatchObject({
      ok: true,
      warning: true,
      detail: expect.stringContaining("stopping the service stops it too"),
    });
    expect(watchdogLaunchCheck(facts(1000, []))).toMatchObject({ ok: true, detail: expect.stringContaining("detached") });
    expect(watchdogLaunchCheck(facts(1000, [])).warning).toBeUndefined();
  });
});
