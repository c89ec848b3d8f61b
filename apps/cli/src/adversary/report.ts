import type { RowResult } from "./row.ts";

const HEADERS = [
  "quiesce",
  "phase",
  "signal",
  "exit",
  "serving again after (s)",
  "recover did",
  "charged (s)",
  "probed outage (s)",
  "|diff| (s)",
  "lock after",
  "run_finished",
  "ok",
];

const num = (x: number | null) => (x === null ? "?" : x.toFixed(2));
// A cell must not break the markdown table.
const cell = (text: string) => text.replaceAll("|", "\\|").replaceAll("\n", " ");

function cellsOf(row: RowResult): string[] {
  return [
    row.quiesce,
    row.phase,
    row.signal,
    row.exit,
    num(row.serving_again_after_s),
    row.recover_did,
    num(row.charged_s),
    num(row.probed_outage_s),
    num(row.diff_s),
    row.lock_after,
    row.run_finished === null ? "?" : String(row.run_finished),
    row.ok ? "ok" : `NO (${row.problems.length})`,
  ];
}

/** The rows as a markdown table, then each row's broken invariants and notes. */
export function markdown(rows: readonly RowResult[]): string {
  const slaSeconds = rows.find((r) => r.sla_s !== null)?.sla_s ?? null;
  const table = [HEADERS, ...rows.map(cellsOf)].map((cells) => cells.map(cell));
  const widths = HEADERS.map((_, i) => Math.max(...table.map((cells) => cells[i]?.length ?? 0)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join(" | ")} |`;
  const out = [line(table[0] ?? []), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`];
  for (const cells of table.slice(1)) out.push(line(cells));
  out.push("");
  const sla = slaSeconds === null ? "KLR_RESTORE_SLA" : `KLR_RESTORE_SLA = ${slaSeconds} s`;
  out.push(
    `Invariants: production serves again within the SLA (${sla}) and after recover; |charged − probed outage| ≤ 0.5 s; the lock free afterwards; one run_finished; SIGTERM: exit 143 (gpu-canaryd: 0) and never "passed".`,
  );
  out.push("");
  for (const row of rows) {
    const items = [...row.problems.map((p) => `BROKEN: ${p}`), ...row.notes];
    if (items.length > 0) out.push(`- ${row.name}: ${items.join("; ")}`);
  }
  return `${out.join("\n")}\n`;
}
