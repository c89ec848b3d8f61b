// pnpm bench (cli): gpu-canary's own cost to production downtime on the simulated host (stop and
// sleep quiesce), the CLI's cold start against `node -e 0`, and predictive evaluations per second.
// Medians of several runs with the spread, side by side in one run; rows go to bench/results.json.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createAuditFeed } from "@gpu-canary/audit-feed";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { SpicaGPUAllocation, accountingFor, predictMemory, shapeOf } from "@gpu-canary/spica-evaluator";
import { type BenchRow, recordBench } from "@gpu-canary/testing";
import { LLAMA_31_8B, createSimSite } from "@gpu-canary/vllm-sim";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const range = (xs: number[], digits = 0) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
const rows: BenchRow[] = [];

/** Downtime minus what the simulated processes take: production's stop, the canary's start and test, its stop, production's start. */
async function downtimeOverhead(quiesce: "stop" | "sleep", runs: number): Promise<{ overheadMs: number[]; downtimeS: number[] }> {
  const overheadMs: number[] = [];
  const downtimeS: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const dir = await mkdtemp(join(tmpdir(), "gpu-canary-bench-"));
    const site = await createSimSite(dir, { settings: { KLR_QUIESCE: quiesce, KLR_CANARY_SAMPLES: "3" } });
    try {
      await site.startProduction();
      const config = requireConfig(loadConfig({ env: site.env, homeDir: site.home })).config;
      const layout = layoutFor(config);
      const audit = createAuditFeed({ dir: layout.auditDir, timeZone: config.maintenanceTimeZone, fsync: true });
      const evaluator = new SpicaGPUAllocation({
        config,
        layout,
        audit,
        env: { GPU_CANARY_SIM_HOST: site.hostFile },
        useSystemdRun: false,
      });
      const result = await evaluator.runTest({ vllm_memory_util: 0.75, whisper_model_size: "small" });
      if (result.status !== "passed" || result.measured?.downtimeSeconds == null)
        throw new Error(`bench run did not pass: ${result.validationReason}`);
      const events = await audit.query({ runId: result.runId });
      const at = (name: string) => Date.parse(events.find((e) => e.event === name)?.ts ?? "");
      const secondsOf = (name: string) => Number(events.find((e) => e.event === name)?.seconds ?? Number.NaN);
      // The simulated processes' own time: the quiesce itself, canary start to verdict, canary stop, the restore.
      const processes =
        secondsOf("production_stopped") * 1000 +
        (at("canary_tested") - at("canary_started")) +
        secondsOf("canary_stopped") * 1000 +
        secondsOf("production_restored") * 1000;
      downtimeS.push(result.measured.downtimeSeconds);
      overheadMs.push(result.measured.downtimeSeconds * 1000 - processes);
    } finally {
      await site.cleanup();
      await rm(dir, { recursive: true, force: true });
    }
  }
  return { overheadMs, downtimeS };
}

// `--cold-start`: the cold-start rows only, printed, not recorded (bench/results.json keeps the whole suite's).
const coldOnly = process.argv.includes("--cold-start");

for (const quiesce of coldOnly ? [] : (["stop", "sleep"] as const)) {
  const { overheadMs, downtimeS } = await downtimeOverhead(quiesce, 3);
  rows.push({
    benchmark: `downtime overhead, quiesced canary (${quiesce})`,
    result: `${median(overheadMs).toFixed(0)} ms (spread ${range(overheadMs)} ms; target ≤ 100) of ${median(downtimeS).toFixed(2)} s measured downtime`,
    values: { overhead_ms: median(overheadMs), downtime_s: median(downtimeS) },
  });
}

// Cold start, whole process: the shipped gpu-canary (bin/gpu-canary.js, which loads the bundle)
// against a bare node and against the floor — node plus ICU's first time-zone lookup, which any
// time-zone-aware command pays before its first line of code. One round runs each once, in turn, so
// a busy machine weighs on all of them alike; medians of the rounds after two warm-up rounds.
const bin = join(import.meta.dirname, "..", "..", "bin", "gpu-canary.js");
if (!existsSync(join(import.meta.dirname, "..", "..", "bundle", "lib", "gpu-canary.js"))) {
  process.stderr.write("the CLI is not built: run `pnpm install` (or `pnpm build`) first\n");
  process.exit(1);
}
const home = await mkdtemp(join(tmpdir(), "gpu-canary-bench-home-"));
// nvidia-smi and production absent: status reports them unreadable, as on a host where they are down.
const env = { ...process.env, KLR_HOME: home, KLR_NVIDIA_SMI: join(home, "no-nvidia-smi"), KLR_VLLM_URL: "http://127.0.0.1:9" };
const timeSpawn = (args: string[]) => {
  const start = performance.now();
  const r = spawnSync(process.execPath, args, { env, stdio: "ignore" });
  if (r.status !== 0 && r.status !== null && args[0] !== "-e") throw new Error(`${args.join(" ")} exited ${r.status}`);
  return performance.now() - start;
};
const coldCases = {
  bare: ["-e", "0"],
  floor: ["-e", "new Intl.DateTimeFormat('en-US', { timeZone: 'America/New_York' }).format()"],
  window: [bin, "window", "--json"],
  status: [bin, "status", "--json"],
};
const coldTimes: Record<keyof typeof coldCases, number[]> = { bare: [], floor: [], window: [], status: [] };
for (let round = 0; round < 17; round += 1) {
  for (const [name, args] of Object.entries(coldCases) as [keyof typeof coldCases, string[]][]) {
    const ms = timeSpawn(args);
    if (round >= 2) coldTimes[name].push(ms);
  }
}
const bare = coldTimes.bare;
const floor = coldTimes.floor;
const targets = { window: 2.0, status: 3.0 } as const;
for (const command of ["window", "status"] as const) {
  const times = coldTimes[command];
  const ratio = median(times) / median(bare);
  const overFloor = median(times) / median(floor);
  rows.push({
    benchmark: `cold start: gpu-canary ${command} --json`,
    result:
      `${median(times).toFixed(0)} ms vs node -e 0 ${median(bare).toFixed(0)} ms: ratio ${ratio.toFixed(2)} (target ≤ ${targets[command].toFixed(1)}); ` +
      `vs the floor ${median(floor).toFixed(0)} ms: ratio ${overFloor.toFixed(2)} (spread ${range(times)} ms)`,
    values: { ms: median(times), node_ms: median(bare), ratio, floor_ms: median(floor), floor_ratio: overFloor, target: targets[command] },
  });
}
rows.push({
  benchmark: "cold start floor: node -e with one time-zone lookup (Intl)",
  result: `${median(floor).toFixed(0)} ms vs node -e 0 ${median(bare).toFixed(0)} ms: ratio ${(median(floor) / median(bare)).toFixed(2)} (spread ${range(floor)} ms)`,
  values: { ms: median(floor), node_ms: median(bare), ratio: median(floor) / median(bare) },
});
// What each command loads of the bundle: its files and their size, counted by a module hook
// (registered through --import, so the command itself runs unchanged).
const countHooks =
  'export async function load(url, context, next) { const r = await next(url, context); if (url.includes("/bundle/lib/")) ' +
  "process.stderr.write(`gpu-canary-load ${r.source ? r.source.length : 0}\\n`); return r; }";
const registerHooks = `import { register } from "node:module"; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(countHooks)}`)});`;
const loaded = Object.fromEntries(
  (["window", "status"] as const).map((command) => {
    const r = spawnSync(
      process.execPath,
      ["--import", `data:text/javascript,${encodeURIComponent(registerHooks)}`, bin, command, "--json"],
      {
        env,
        encoding: "utf8",
      },
    );
    const sizes = r.stderr
      .split("\n")
      .filter((line) => line.startsWith("gpu-canary-load "))
      .map((line) => Number(line.split(" ")[1]));
    return [command, { files: sizes.length, kib: sizes.reduce((a, b) => a + b, 0) / 1024 }];
  }),
);
rows.push({
  benchmark: "cold start: what each command loads of the bundle (files of bundle/lib/, their size)",
  result: Object.entries(loaded)
    .map(([command, l]) => `${command} ${l.files} files, ${l.kib.toFixed(0)} KiB`)
    .join("; "),
  values: Object.fromEntries(
    Object.entries(loaded).flatMap(([command, l]) => [
      [`${command}_files`, l.files],
      [`${command}_kib`, l.kib],
    ]),
  ),
});

// Where a cold start goes beyond the floor: each heavy dependency's import on its own.
const packagesDir = join(import.meta.dirname, "..", "..", "..", "..", "packages");
const imports: [name: string, owner: string, code: string][] = [
  ["zod", "state-file", "await import('zod')"],
  ["commander", "../apps/cli", "await import('commander')"],
  [
    "luxon + a time-zone lookup",
    "policy",
    "const { DateTime } = await import('luxon'); DateTime.now().setZone('America/New_York').toISO()",
  ],
  ["undici", "vllm-client", "await import('undici')"],
  ["execa", "vllm-control", "await import('execa')"],
];
const importCosts = imports.map(([name, owner, code]) => {
  const times = Array.from({ length: 7 }, () => {
    const start = performance.now();
    const r = spawnSync(process.execPath, ["--input-type=module", "-e", code], { cwd: join(packagesDir, owner), stdio: "ignore" });
    if (r.status !== 0) throw new Error(`importing ${name} from ${owner} exited ${r.status}`);
    return performance.now() - start;
  });
  return { name, ms: median(times) - median(bare) };
});
rows.push({
  benchmark: "cold start: import cost over node -e 0, one module per process",
  result: importCosts.map((c) => `${c.name} ${c.ms.toFixed(0)} ms`).join(", "),
  values: Object.fromEntries(importCosts.map((c) => [c.name, c.ms])),
});
await rm(home, { recursive: true, force: true });

if (coldOnly) {
  for (const row of rows) process.stdout.write(`${row.benchmark}: ${row.result}\n`);
  process.exit(0);
}

// Predictive evaluations: the memory model alone, and a whole `evaluate --mode predictive` in-process.
const shape = shapeOf(LLAMA_31_8B.config);
const accounting = accountingFor("0.11.0");
const modelRates: number[] = [];
for (let round = 0; round < 5; round += 1) {
  const n = 20_000;
  const start = performance.now();
  for (let i = 0; i < n; i += 1) {
    predictMemory({
      totalBytes: 139.8 * 2 ** 30,
      othersBytes: 0,
      whisperBytes: 1.16 * 2 ** 30,
      gpuName: "NVIDIA H200",
      util: 0.6 + (i % 30) / 100,
      accounting,
      shape,
      weightsBytes: 16e9,
      maxModelLen: 131072,
      kvCacheDtype: "auto",
    });
  }
  modelRates.push((n * 1000) / (performance.now() - start));
}
rows.push({
  benchmark: "predictive model (predictMemory)",
  result: `${Math.round(median(modelRates)).toLocaleString("en-US")} evaluations/s (spread ${range(modelRates)})`,
  values: { per_s: median(modelRates) },
});

const dir = await mkdtemp(join(tmpdir(), "gpu-canary-bench-"));
const site = await createSimSite(dir, {});
try {
  await site.startProduction();
  const config = requireConfig(loadConfig({ env: site.env, homeDir: site.home })).config;
  const evaluator = new SpicaGPUAllocation({ config, env: { GPU_CANARY_SIM_HOST: site.hostFile } });
  const times: number[] = [];
  for (let i = 0; i < 8; i += 1) {
    const start = performance.now();
    await evaluator.runTest({ vllm_memory_util: 0.75, whisper_model_size: "small" }, { mode: "predictive" });
    times.push(performance.now() - start);
  }
  rows.push({
    benchmark: "evaluate --mode predictive (nvidia-smi stand-in, /version, model folder, audit)",
    result: `${(1000 / median(times)).toFixed(1)} evaluations/s (${median(times).toFixed(0)} ms each, spread ${range(times)} ms; most of it the nvidia-smi stand-in's start)`,
    values: { per_s: 1000 / median(times), ms: median(times) },
  });
} finally {
  await site.cleanup();
  await rm(dir, { recursive: true, force: true });
}

await recordBench("system (apps/cli)", rows);
