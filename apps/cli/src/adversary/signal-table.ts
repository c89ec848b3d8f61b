// pnpm signal-table (cli): SIGKILL and SIGTERM of `gpu-canary evaluate --mode canary` at each phase of
// a quiesced run, and SIGTERM of gpu-canaryd mid-run, each on a fresh simulated host with a client
// probing production every 100 ms. Prints the table of what production, the budget, the lock and
// the audit trail look like afterwards; exits 1 when a row breaks an invariant.
//   --json          the rows as JSON instead of the markdown table
//   --only <text>   only the rows whose name ("stop / testing / SIGKILL") contains the text
import { parseArgs } from "node:util";
import { markdown } from "./report.ts";
import { type RowResult, runRow } from "./row.ts";
import { rowName, scenarios } from "./scenarios.ts";

const { values } = parseArgs({
  options: { json: { type: "boolean", default: false }, only: { type: "string" } },
  strict: true,
});

const only = values.only?.toLowerCase();
const chosen = scenarios().filter((s) => only === undefined || rowName(s).toLowerCase().includes(only));
if (chosen.length === 0) {
  process.stderr.write(`no row matches --only ${JSON.stringify(values.only)}; rows:\n${scenarios().map(rowName).join("\n")}\n`);
  process.exit(2);
}

// One row at a time: rows side by side would share the CPUs, and the timings they measure with them.
const rows: RowResult[] = [];
for (const [i, scenario] of chosen.entries()) {
  const started = Date.now();
  process.stderr.write(`[${i + 1}/${chosen.length}] ${rowName(scenario)} … `);
  const row = await runRow(scenario);
  rows.push(row);
  process.stderr.write(`${row.ok ? "ok" : `NOT OK: ${row.problems.join("; ")}`} (${((Date.now() - started) / 1000).toFixed(1)} s)\n`);
}

process.stdout.write(values.json ? `${JSON.stringify(rows, null, 2)}\n` : markdown(rows));
process.exitCode = rows.every((r) => r.ok) ? 0 : 1;
