/**
 * Prometheus text exposition format (the lines vLLM's /metrics serves), parsed into samples.
 * Small by design: `name{label="value",…} number [timestamp]`, `#` lines skipped, label
 * values with \" \\ \n escapes, NaN and ±Inf. No npm parser of this format is kept up well
 * enough to depend on.
 */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?\s*$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?\s*/y;

export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = LINE.exec(line);
    if (!match?.[1] || match[4] === undefined) continue;
    const value = parseValue(match[4]);
    if (value === null) continue;
    const labels: Record<string, string> = {};
    const body = match[3] ?? "";
    LABEL.lastIndex = 0;
    let label: RegExpExecArray | null;
    while (LABEL.lastIndex < body.length && (label = LABEL.exec(body)) !== null) {
      if (label[1] !== undefined) labels[label[1]] = (label[2] ?? "").replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value });
  }
  return samples;
}

function parseValue(text: string): number | null {
  if (text === "NaN") return Number.NaN;
  if (text === "+Inf" || text === "Inf") return Number.POSITIVE_INFINITY;
  if (text === "-Inf") return Number.NEGATIVE_INFINITY;
  const value = Number(text);
  return Number.isNaN(value) ? null : value;
}

/** The first sample of the first name that has one: metric names changed across vLLM versions. */
export function firstOf(samples: Sample[], names: readonly string[]): Sample | undefined {
  for (const name of names) {
    const sample = samples.find((s) => s.name === name);
    if (sample) return sample;
  }
  return undefined;
}
