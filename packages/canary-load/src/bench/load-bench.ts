// pnpm bench (canary-load): the rate the load generator drives, and its own CPU per request, side
// by side with autocannon on the same server, same connections and same request in the same run:
// first against a fast loopback stand-in for vLLM (the generator's ceiling), then against the
// simulated vLLM the tests use (what it drives against the simulator on this machine). Medians of
// several alternating rounds; each server runs in its own process, so the CPU is the client's.
import { spawn } from "node:child_process";
import { join } from "node:path";
import { type BenchRow, recordBench, tsNodeArgs } from "@gpu-canary/testing";
import autocannon from "autocannon";
import { PROMPT_TOKENS_PER_WORD } from "@gpu-canary/vllm-sim";
import { buildPrompt, randomSource, runLoad } from "../index.ts";

const ROUNDS = 3;
const SECONDS = 3;
const CONNECTIONS = 16;
const OUTPUT_TOKENS = 16;
/** against the simulator: its steps take about a millisecond whatever the batch, so more streams are needed to load the client */
const SIM_CONNECTIONS = 64;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const cpuMicros = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return used.user + used.system;
};

interface Compared {
  rate: number;
  rateTheirs: number;
  cpu: number;
  cpuTheirs: number;
  spread: string;
}

/** Start `script` (it prints its URL), then alternate the load generator and autocannon on it for ROUNDS rounds. */
async function compare(script: string, connections: number, tokensPerWord: number): Promise<Compared> {
  const server = spawn(process.execPath, tsNodeArgs(join(import.meta.dirname, script)), { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const url = await new Promise<string>((resolve, reject) => {
      server.stdout.setEncoding("utf8").once("data", (line: string) => resolve(line.trim()));
      server.once("exit", (code) => reject(new Error(`the bench server ${script} exited (${code}) before listening`)));
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
        tokensPerWord,
        concurrency: connections,
        promptTokens: 16,
        outputTokens: OUTPUT_TOKENS,
        durationSeconds: SECONDS,
      });
      if (report.totals.failed > 0)
        throw new Error(
          `the load on ${script} saw ${report.totals.failed} failed requests: ${JSON.stringify(report.requests.find((r) => r.failure)?.failure)}`,
        );
      ours.cpu.push(cpuMicros(since) / report.totals.completed);
      ours.rate.push(report.totals.requestsPerSecond);

      since = process.cpuUsage();
      const result = await autocannon({
        url: `${url}/v1/completions`,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
        connections,
        duration: SECONDS,
      });
      if (result.non2xx + result.errors > 0)
        throw new Error(`autocannon on ${script} saw ${result.non2xx} non-2xx answers and ${result.errors} errors`);
      theirs.cpu.push(cpuMicros(since) / result.requests.total);
      theirs.rate.push(result.requests.total / SECONDS);
    }
    const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)}`;
    return {
      rate: median(ours.rate),
      rateTheirs: median(theirs.rate),
      cpu: median(ours.cpu),
      cpuTheirs: median(theirs.cpu),
      spread: `spread ${spread(ours.rate)} vs ${spread(theirs.rate)}`,
    };
  } finally {
    server.kill("SIGTERM");
  }
}

const rows = (c: Compared, rateName: string, cpuName: string): BenchRow[] => [
  {
    benchmark: rateName,
    result: `canary-load ${c.rate.toFixed(0)} req/s vs autocannon ${c.rateTheirs.toFixed(0)} req/s: ratio ${(c.rate / c.rateTheirs).toFixed(2)} (${c.spread})`,
    values: { canary_load_per_s: c.rate, autocannon_per_s: c.rateTheirs, ratio: c.rate / c.rateTheirs },
  },
  {
    benchmark: cpuName,
    result: `canary-load ${c.cpu.toFixed(0)} µs vs autocannon ${c.cpuTheirs.toFixed(0)} µs: ratio ${(c.cpu / c.cpuTheirs).toFixed(2)}`,
    values: { canary_load_cpu_us: c.cpu, autocannon_cpu_us: c.cpuTheirs, ratio: c.cpu / c.cpuTheirs },
  },
];

const loopback = await compare("fast-vllm.ts", CONNECTIONS, 1);
const simulated = await compare("sim-vllm.ts", SIM_CONNECTIONS, PROMPT_TOKENS_PER_WORD);
await recordBench("load generator (packages/canary-load)", [
  ...rows(
    loopback,
    `load generator rate, ${CONNECTIONS} streams of ${OUTPUT_TOKENS} tokens, loopback (median of ${ROUNDS} × ${SECONDS} s)`,
    "load generator CPU per request (process.cpuUsage, user + system)",
  ),
  ...rows(
    simulated,
    `load generator rate against the simulated vLLM (vllm-sim, tokenLatencyMs 0), ${SIM_CONNECTIONS} streams of ${OUTPUT_TOKENS} tokens (median of ${ROUNDS} × ${SECONDS} s)`,
    "load generator CPU per request against the simulated vLLM (process.cpuUsage, user + system)",
  ),
]);
