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

/**
 * The q-quantile of a histogram's observations, as PromQL's histogram_quantile computes it:
 * cumulative `<name>_bucket` counts summed over every other label, linear interpolation within
 * the bucket the rank falls in (from 0 for the first; the highest finite bound when it falls in
 * +Inf). Null when the histogram is absent or has no observations.
 */
export function histogramQuantile(samples: readonly Sample[], name: string, q: number): number | null {
  return histogramQuantileBucket(samples, name, q)?.value ?? null;
}

/**
 * histogramQuantile with the bucket it fell in: the quantile is only known to lie between `lower`
 * and `upper`; the interpolated `value` assumes the observations spread evenly inside.
 */
export function histogramQuantileBucket(
  samples: readonly Sample[],
  name: string,
  q: number,
): { value: number; lower: number; upper: number } | null {
  const counts = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${name}_bucket` || s.labels.le === undefined) continue;
    const le = parseValue(s.labels.le);
    if (le === null || Number.isNaN(le) || !Number.isFinite(s.value)) continue;
    counts.set(le, (counts.get(le) ?? 0) + s.value);
  }
  const buckets = [...counts.entries()].sort((a, b) => a[0] - b[0]);
  const total = buckets.at(-1)?.[1] ?? 0;
  if (buckets.length < 2 || total <= 0 || buckets.at(-1)?.[0] !== Number.POSITIVE_INFINITY) return null;
  const rank = Math.min(Math.max(q, 0), 1) * total;
  for (let i = 0; i < buckets.length; i += 1) {
    const [upper, count] = buckets[i] ?? [0, 0];
    if (count < rank) continue;
    const [lower, below] = i === 0 ? [0, 0] : (buckets[i - 1] ?? [0, 0]);
    if (upper === Number.POSITIVE_INFINITY) return i === 0 ? null : { value: lower, lower, upper };
    return { value: count === below ? upper : lower + ((upper - lower) * (rank - below)) / (count - below), lower, upper };
  }
  return null;
}

/** The highest value of a gauge over its label sets (every engine, every model). */
export function maxOf(samples: readonly Sample[], name: string): number | null {
  const values = samples.filter((s) => s.name === name && Number.isFinite(s.value)).map((s) => s.value);
  return values.length === 0 ? null : Math.max(...values);
}

/**
 * A histogram's observations between two readings of the same /metrics: `<name>_bucket` and
 * `<name>_count` of `after` less the same series (by labels) in `before` — what a load added,
 * ready for histogramQuantile. A series that went down (the process restarted) counts from 0.
 */
export function histogramDelta(before: readonly Sample[], after: readonly Sample[], name: string): Sample[] {
  const key = (s: Sample) =>
    `${s.name}{${Object.entries(s.labels)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}=${v}`)
      .join(",")}}`;
  const earlier = new Map(before.filter((s) => s.name.startsWith(name)).map((s) => [key(s), s.value]));
  return after
    .filter((s) => s.name === `${name}_bucket` || s.name === `${name}_count`)
    .map((s) => {
      const was = earlier.get(key(s)) ?? 0;
      return { ...s, value: s.value >= was ? s.value - was : s.value };
    });
}

/** A counter's (or a histogram's `_count`/`_sum`) total over its label sets (every engine, every model); null when absent. */
export function sumOf(samples: readonly Sample[], name: string): number | null {
  const values = samples.filter((s) => s.name === name && Number.isFinite(s.value));
  return values.length === 0 ? null : values.reduce((sum, s) => sum + s.value, 0);
}
