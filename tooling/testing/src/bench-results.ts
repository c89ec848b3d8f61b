import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";

/** The repository root's bench/results.json: every benchmark's latest rows, with the machine they ran on. */
export const BENCH_RESULTS = join(import.meta.dirname, "..", "..", "..", "bench", "results.json");

export interface BenchRow {
  benchmark: string;
  result: string;
  /** the numbers behind the sentence */
  values: Record<string, number>;
}

/** Record one suite's rows (read-merge-write, atomic) and print them as a table. */
export async function recordBench(suite: string, rows: BenchRow[]): Promise<void> {
  let suites: Record<string, unknown> = {};
  try {
    const parsed = JSON.parse(await readFile(BENCH_RESULTS, "utf8")) as { suites?: Record<string, unknown> };
    if (parsed.suites && typeof parsed.suites === "object") suites = parsed.suites;
  } catch {
    // first run, or a file someone broke: start again (it only holds results)
  }
  const machine = {
    cpu: cpus()[0]?.model ?? "?",
    cores: cpus().length,
    memory_gib: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
  await mkdir(dirname(BENCH_RESULTS), { recursive: true });
  const temp = `${BENCH_RESULTS}.${process.pid}.tmp`;
  await writeFile(
    temp,
    `${JSON.stringify({ machine, suites: { ...suites, [suite]: { at: new Date().toISOString(), rows } } }, null, 2)}\n`,
  );
  await rename(temp, BENCH_RESULTS);
  const width = Math.max(...rows.map((r) => r.benchmark.length));
  process.stdout.write(`\n${suite} (${machine.cpu}, ${machine.cores} cores, Node ${machine.node})\n`);
  for (const row of rows) process.stdout.write(`  ${row.benchmark.padEnd(width)}  ${row.result}\n`);
}
