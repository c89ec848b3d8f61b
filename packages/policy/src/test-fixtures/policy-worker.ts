// `<mode> <dir> <count>`: charge (the budget's guarded charge), unguarded (the same read-modify-write
// without the lock, slowed so the overlap is forced), admit (the rate limiter).
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { writeJsonAtomic } from "@gpu-canary/state-file";
import { createDowntimeBudget, createRateLimiter, fileBudgetStore, fileRateLimitStore } from "../index.ts";

const [mode = "", dir = "", countText = "0"] = process.argv.slice(2);
const count = Number(countText);
while (!existsSync(join(dir, "go"))) await sleep(5);

const budget = createDowntimeBudget({ storeFor: fileBudgetStore((date) => join(dir, `gpu_budget_${date}.json`)), maxSeconds: 60 });
const limiter = createRateLimiter({
  store: fileRateLimitStore(join(dir, "rate_limits.json")),
  rule: { maxRuns: 3, windowHours: 24, cooldownHours: 0 },
});
let admitted = 0;
for (let i = 0; i < count; i += 1) {
  const runId = `run-${process.pid}-${i}`;
  if (mode === "charge") await budget.charge("20261128", runId, 0.25);
  else if (mode === "unguarded") {
    const path = join(dir, "gpu_budget_20261128.json");
    const current = JSON.parse(await readFile(path, "utf8")) as { seconds_used: number };
    await sleep(2);
    await writeJsonAtomic(path, { seconds_used: current.seconds_used + 0.25 });
  } else if ((await limiter.admit("gpu_allocation", runId)).allowed) admitted += 1;
}
process.stdout.write(String(admitted));
