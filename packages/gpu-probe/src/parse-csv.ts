import { GpuProbeError } from "./errors.ts";

/** Cells that mean "unknown", never 0 (nvidia-smi prints them for fields a GPU or driver cannot give). */
const ABSENT = /^(\[.*\]|N\/A|)$/;

export interface CsvTable {
  /** field name → column, from the header when there is one, else from the query order */
  columns: Map<string, number>;
  rows: string[][];
}

/** A header cell as nvidia-smi prints it: `memory.total [MiB]` → `memory.total`. */
export function headerName(cell: string): string {
  return cell.replace(/\s*\[[^\]]*\]\s*$/, "").trim();
}

/**
 * Split nvidia-smi's CSV: cells are separated by ", " and never quoted. Header or not, CRLF or
 * not, units or not. `fields` is what was asked, in order; a header, when present, decides the
 * columns instead (newer drivers may add or reorder).
 */
export function parseCsv(text: string, fields: readonly string[], headerFirstField: string): CsvTable {
  const lines = text
    .split(/\r?\n/)
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== "");
  const split = (line: string) => line.split(",").map((cell) => cell.trim());
  const first = lines[0];
  const hasHeader = first !== undefined && headerName(split(first)[0] ?? "") === headerFirstField;
  const columns = new Map<string, number>();
  if (hasHeader) {
    split(first).forEach((cell, i) => columns.set(aliasOf(headerName(cell)), i));
  } else {
    fields.forEach((field, i) => columns.set(aliasOf(field), i));
  }
  return { columns, rows: (hasHeader ? lines.slice(1) : lines).map(split) };
}

/** nvidia-smi prints `used_gpu_memory` for the `used_memory` field and `process_name` for `name`. */
function aliasOf(field: string): string {
  if (field === "used_gpu_memory") return "used_memory";
  return field;
}

/** A MiB cell: a number, or null when nvidia-smi does not know; anything else is not its format. */
export function mib(cell: string | undefined, where: string, output: string): number | null {
  const value = (cell ?? "").replace(/\s*MiB$/, "").trim();
  if (ABSENT.test(value)) return null;
  if (!/^\d+(\.\d+)?$/.test(value))
    throw new GpuProbeError("NVIDIA_SMI_UNPARSABLE", `unexpected ${where} value ${JSON.stringify(cell)}`, output);
  return Number(value);
}

export function isAbsent(cell: string | undefined): boolean {
  return ABSENT.test((cell ?? "").trim());
}
