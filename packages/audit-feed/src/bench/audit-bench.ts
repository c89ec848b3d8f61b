// pnpm bench (audit-feed): append rate (fsync on and off) and the time to query 30 days × 10,000 events.
import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { type BenchRow, recordBench } from "@gpu-canary/testing";
import { createAuditFeed, dayOf } from "../index.ts";

const dir = await mkdtemp(join(tmpdir(), "audit-bench-"));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const rows: BenchRow[] = [];
try {
  for (const fsync of [true, false]) {
    const rates: number[] = [];
    for (let round = 0; round < 3; round += 1) {
      const feed = createAuditFeed({ dir: join(dir, `append-${String(fsync)}-${round}`), timeZone: "UTC", fsync });
      const count = fsync ? 300 : 3000;
      const start = performance.now();
      for (let i = 0; i < count; i += 1)
        await feed.append({ event: "gate_refused", run_id: `r-${i}`, gate: "window", reason: "the window is closed" });
      rates.push(count / ((performance.now() - start) / 1000));
    }
    process.stdout.write(
      `audit append (fsync ${fsync ? "on" : "off"}): ${median(rates).toFixed(0)} events/s (3 rounds: ${rates.map((r) => r.toFixed(0)).join(", ")})\n`,
    );
    rows.push({
      benchmark: `audit append, fsync ${fsync ? "per line" : "off"}`,
      result: `${median(rates).toFixed(0)} events/s (3 rounds: ${rates.map((r) => r.toFixed(0)).join(", ")})`,
      values: { per_s: median(rates) },
    });
  }

  // 30 day files × 10,000 events, written directly, then a query over all of them.
  const epochs = join(dir, "epochs");
  await mkdir(epochs, { recursive: true });
  const end = Date.parse("2026-11-28T12:00:00Z");
  for (let day = 0; day < 30; day += 1) {
    const base = end - day * 86_400_000;
    const lines: string[] = [];
    for (let i = 0; i < 10_000; i += 1) {
      const ts = new Date(base - 43_200_000 + i * 8000).toISOString();
      lines.push(
        JSON.stringify({
          ts,
          event: i % 10 ? "gate_refused" : "budget_charged",
          run_id: `r-${day}-${i}`,
          host: "h",
          pid: 1,
          gate: "window",
          reason: "closed",
        }),
      );
    }
    await writeFile(join(epochs, `gpu_canary_${dayOf(new Date(base), "UTC")}.jsonl`), `${lines.join("\n")}\n`);
  }
  const feed = createAuditFeed({ dir: epochs, timeZone: "UTC" });
  const times: number[] = [];
  let found = 0;
  for (let round = 0; round < 3; round += 1) {
    const start = performance.now();
    found = (await feed.query({ event: "budget_charged" })).length;
    times.push(performance.now() - start);
  }
  process.stdout.write(
    `audit query, 30 days × 10,000 events: ${median(times).toFixed(0)} ms (3 rounds: ${times.map((t) => t.toFixed(0)).join(", ")}; ${found} matches)\n`,
  );
  rows.push({
    benchmark: "audit query, 30 days × 10,000 events",
    result: `${median(times).toFixed(0)} ms (3 rounds: ${times.map((t) => t.toFixed(0)).join(", ")})`,
    values: { ms: median(times) },
  });
  await recordBench("audit trail (packages/audit-feed)", rows);
} finally {
  await rm(dir, { recursive: true, force: true });
}
