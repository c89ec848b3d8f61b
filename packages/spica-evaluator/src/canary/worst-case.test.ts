import { createAuditFeed } from "@gpu-canary/audit-feed";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { watchdogDeadlineSeconds, worstCase } from "./worst-case.ts";

const settings = { canaryTimeoutSeconds: 30, restoreSlaSeconds: 15 };
const NOW = new Date("2026-12-02T04:00:00Z");
const daysAgo = (days: number) => new Date(NOW.getTime() - days * 86_400_000);

/** An audit trail with production_restored events of the given seconds, each at its time. */
async function trail(restores: [seconds: number, at: Date][]) {
  const dir = await testdir();
  let at = NOW;
  const audit = createAuditFeed({ dir, timeZone: "UTC", now: () => at, fsync: false });
  for (const [seconds, when] of restores) {
    at = when;
    await audit.append({ event: "production_restored", run_id: `r-${when.getTime()}`, seconds });
  }
  return audit;
}

describe("worstCase", () => {
  it("assumes the restore SLA before any restore was measured, and says so", async () => {
    const worst = await worstCase(await trail([]), settings, NOW);
    expect(worst).toMatchObject({ restoreSeconds: 15, restoreMeasured: false, totalSeconds: 5 + 30 + 5 + 15 });
    expect(worst.basis).toContain("restore 15 s (default)");
  });

  it("never lets fast restores average away a slow one of the last seven nights", async () => {
    const fast = Array.from({ length: 30 }, (_, i): [number, Date] => [2, daysAgo(20 - i * 0.5)]);
    const worst = await worstCase(await trail([...fast, [48, daysAgo(3)]]), settings, NOW);
    expect(worst).toMatchObject({ restoreSeconds: 48, restoreMeasured: true });
    expect(worst.basis).toContain("restore 48 s (the slowest of the last 7 days)");
  });

  it("forgets a slow restore older than seven nights once the p95 no longer carries it", async () => {
    const fast = Array.from({ length: 40 }, (_, i): [number, Date] => [2, daysAgo(6 - i * 0.1)]);
    const worst = await worstCase(await trail([[48, daysAgo(10)], ...fast]), settings, NOW);
    expect(worst.restoreSeconds).toBe(2);
    expect(worst.basis).toContain("restore 2 s (p95 of 41)");
  });
});

describe("watchdogDeadlineSeconds", () => {
  const worst = {
    quiesceSeconds: 5,
    canaryTimeoutSeconds: 30,
    canaryStopSeconds: 5,
    restoreSeconds: 20,
    restoreMeasured: true,
    totalSeconds: 60,
    basis: "",
  };

  it("is the worst case plus a margin when the budget has room", () => {
    expect(watchdogDeadlineSeconds(worst, 600)).toBe(70);
  });

  it("comes earlier when the budget left, less the restore, runs out first", () => {
    expect(watchdogDeadlineSeconds(worst, 65)).toBe(45);
    expect(watchdogDeadlineSeconds(worst, 10)).toBe(0);
  });
});
