import { createAuditFeed } from "@gpu-canary/audit-feed";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { lastStartSeconds } from "./production-start.ts";
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

describe("worstCase of a run that switches Whisper", () => {
  it("adds the switch there and back, each its commands and the whole steady wait, and says so", async () => {
    const plain = await worstCase(await trail([]), settings, NOW);
    const worst = await worstCase(await trail([]), settings, NOW, null, { steadyTimeoutSeconds: 20 });
    expect(worst.whisperSeconds).toBe(2 * (5 + 20));
    expect(worst.totalSeconds).toBe(plain.totalSeconds + 50);
    expect(worst.basis).toContain("Whisper there and back 2 × (commands 5 s (default) + steady wait ≤ 20 s)");
    expect(plain).toMatchObject({ whisperSeconds: 0 });
  });

  it("takes the commands' time from the switches measured before", async () => {
    const dir = await testdir();
    const audit = createAuditFeed({ dir, timeZone: "UTC", now: () => NOW, fsync: false });
    for (const seconds of [0.4, 0.5, 1.2])
      await audit.append({ event: "whisper_switched", run_id: "r", from: "small", to: "base", commands_seconds: seconds });
    const worst = await worstCase(audit, settings, NOW, null, { steadyTimeoutSeconds: 8 });
    expect(worst.whisperSeconds).toBe(Math.round(2 * (1.1 + 8) * 10) / 10);
    expect(worst.basis).toContain("Whisper there and back 2 × (commands 1.1 s (p95 of 3) + steady wait ≤ 8 s)");
  });
});

describe("worstCase with production's start from its log", () => {
  it("never estimates the restore below production's last start as its log shows it, even before any restore was measured", async () => {
    const none = await worstCase(await trail([]), settings, NOW, 42);
    expect(none).toMatchObject({ restoreSeconds: 42, restoreMeasured: true, totalSeconds: 5 + 30 + 5 + 42 });
    expect(none.basis).toContain("restore 42 s (production's last start in its log)");
    const fast = await worstCase(await trail([[3, daysAgo(1)]]), settings, NOW, 42);
    expect(fast.restoreSeconds).toBe(42);
    // A slower restore measured by a run still wins; a quicker logged start never lowers the assumed SLA.
    expect((await worstCase(await trail([[60, daysAgo(1)]]), settings, NOW, 42)).restoreSeconds).toBe(60);
    expect(await worstCase(await trail([]), settings, NOW, 2)).toMatchObject({ restoreSeconds: 15, restoreMeasured: false });
  });
});

describe("lastStartSeconds", () => {
  // Line shapes from published vLLM logs: vllm-project/vllm#24162 (0.10), #3161 (0.3), #44106 (a `(APIServer pid=N)` prefix).
  it("reads the last start: from the version line to the listening line, in each version's format", () => {
    expect(
      lastStartSeconds([
        "INFO 03-02 23:59:21 api_server.py:240] vLLM API server version 0.3.3",
        "INFO 03-03 00:00:02 api_server.py:255] Starting vLLM API server on http://0.0.0.0:8000",
        "INFO:     Application startup complete.",
        "INFO 09-03 16:28:10 [api_server.py:1882] vLLM API server version 0.10.2.dev378+g4d7fe40fc.d20250829",
        "INFO 09-03 16:28:17 [__init__.py:744] Resolved architecture: Qwen2ForCausalLM",
        "INFO 09-03 16:29:05 [api_server.py:1971] Starting vLLM API server 0 on http://0.0.0.0:8000",
      ]),
    ).toBe(55);
    expect(
      lastStartSeconds([
        "(APIServer pid=1264644) INFO 06-02 00:51:00 [api_server.py:1882] vLLM API server version 0.20.1",
        "(APIServer pid=1264644) INFO 06-02 00:52:40 [api_server.py:584] Starting vLLM server on http://0.0.0.0:8000",
      ]),
    ).toBe(100);
  });

  it("says nothing for a start that never finished, lines without vLLM's stamp, or two logs run together", () => {
    expect(lastStartSeconds(["INFO 09-03 16:28:10 [api_server.py:1882] vLLM API server version 0.10.2"])).toBeNull();
    expect(lastStartSeconds(["vLLM API server version 0.10.2", "Starting vLLM API server 0 on http://0.0.0.0:8000"])).toBeNull();
    expect(
      lastStartSeconds([
        "INFO 09-03 16:28:10 [api_server.py:1882] vLLM API server version 0.10.2",
        "INFO 09-05 16:29:05 [api_server.py:1971] Starting vLLM API server 0 on http://0.0.0.0:8000",
      ]),
    ).toBeNull();
  });
});

describe("watchdogDeadlineSeconds", () => {
  const worst = {
    quiesceSeconds: 5,
    canaryTimeoutSeconds: 30,
    canaryStopSeconds: 5,
    restoreSeconds: 20,
    whisperSeconds: 0,
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

  it("gives an apply's verification, which production serves through, its time on top of the budget's bound", () => {
    // Two restarts of 20 s (downtime 40 s) and a 30 s verification: 45 s of budget left holds the
    // downtime, and the watchdog must not fire at 25 s, mid-verification.
    const apply = { ...worst, totalSeconds: 70, downtimeSeconds: 40 };
    expect(watchdogDeadlineSeconds(apply, 45)).toBe(55);
    expect(watchdogDeadlineSeconds(apply, 600)).toBe(80);
  });
});
