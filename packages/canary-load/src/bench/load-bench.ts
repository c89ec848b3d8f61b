// pnpm bench (canary-load): the rate the load generator drives against a fast loopback stand-in
// for vLLM, and its own CPU per request, side by side with autocannon on the same server, same
// connections and same request in the same run. Medians of several alternating rounds.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { recordBench, tsNodeArgs } from "@gpu-canary/testing";
import autocannon from "autocannon";
import { buildPrompt, randomSource, runLoad } from "../index.ts";

const ROUNDS = 3;
const SECONDS = 3;
const CONNECTIONS = 16;
const OUTPUT_TOKENS = 16;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const cpuMicros = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return used.user + used.system;
};

const server = spawn(process.execPath, tsNodeArgs(join(import.meta.dirname, "fast-vllm.ts")), { stdio: ["ignore", "pipe", "inherit"] });
try {
  const url = await new Promise<string>((resolve, reject) => {
    server.stdout.setEncoding("utf8").once("data", (line: string) => resolve(line.trim()));
    server.once("exit", (code) => reject(new Error(`the bench server exited (${code}) before listening`)));
  });

  const ours = { rate: [] as number[], cpu: [] as number[] };
  const theirs = { rate: [] as number[], cpu: [] as number[] };
  const body = JSON.stringify({
    model: "bench",
    prompt: buildPrompt(16, randomSource(1)),
    max_tokens: OUTPUT_TOKENS,
    min_tokens: OUTPUT_TOKENS,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  });
  for (let round = 0; round < ROUNDS; round += 1) {
    let since = process.cpuUsage();
    const report = await runLoad({
      baseUrl: url,
      model: "bench",
      tokensPerWord: 1,
      concurrency: CONNECTIONS,
      promptTokens: 16,
      outputTokens: OUTPUT_TOKENS,
      durationSeconds: SECONDS,
    });
    if (report.totals.failed > 0)
      throw new Error(
        `the load saw ${report.totals.failed} failed requests: ${JSON.stringify(report.requests.find((r) => r.failure)?.failure)}`,
      );
    ours.cpu.push(cpuMicros(since) / report.totals.completed);
    ours.rate.push(report.totals.requestsPerSecond);

    since = process.cpuUsage();
    const result = await autocannon({
      url: `${url}/v1/completions`,
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
      connections: CONNECTIONS,
      duration: SECONDS,
    });
    if (result.non2xx + result.errors > 0) throw new Error(`autocannon saw ${result.non2xx} non-2xx answers and ${result.errors} errors`);
    theirs.cpu.push(cpuMicros(since) / result.requests.total);
    theirs.rate.push(result.requests.total / SECONDS);
  }

  const rate = median(ours.rate);
  const rateTheirs = median(theirs.rate);
  const cpu = median(ours.cpu);
  const cpuTheirs = median(theirs.cpu);
  const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
  await recordBench("load generator (packages/canary-load)", [
    {
      benchmark: `load generator rate, ${CONNECTIONS} streams of ${OUTPUT_TOKENS} tokens, loopback (median of ${ROUNDS} × ${SECONDS} s)`,
      result: `canary-load ${rate.toFixed(0)} req/s vs autocannon ${rateTheirs.toFixed(0)} req/s: ratio ${(rate / rateTheirs).toFixed(2)} (spread ${spread(ours.rate)} vs ${spread(theirs.rate)})`,
      values: { canary_load_per_s: rate, autocannon_per_s: rateTheirs, ratio: rate / rateTheirs },
    },
    {
      benchmark: "load generator CPU per request (process.cpuUsage, user + system)",
      result: `canary-load ${cpu.toFixed(0)} µs vs autocannon ${cpuTheirs.toFixed(0)} µs: ratio ${(cpu / cpuTheirs).toFixed(2)}`,
      values: { canary_load_cpu_us: cpu, autocannon_cpu_us: cpuTheirs, ratio: cpu / cpuTheirs },
    },
  ]);
} finally {
  server.kill("SIGTERM");
}
