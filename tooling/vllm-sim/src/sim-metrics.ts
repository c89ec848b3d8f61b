/**
 * The Prometheus exposition of the simulated vLLM, with vLLM's names, label set (`engine`,
 * `model_name`) and bucket layouts (vllm/v1/metrics/loggers.py), fed by the requests it served.
 */

/** vLLM's build_1_2_5_buckets(max_model_len): 1, 2, 5, 10, 20, 50, … up to max_model_len. */
export function buckets125(max: number): number[] {
  const out: number[] = [];
  for (let exponent = 1; ; exponent *= 10) {
    for (const mantissa of [1, 2, 5]) {
      const value = mantissa * exponent;
      if (value > max) return out;
      out.push(value);
    }
  }
}

export const TTFT_BUCKETS = [
  0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/** vllm:inter_token_latency_seconds and the older vllm:time_per_output_token_seconds share them. */
export const ITL_BUCKETS = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0];
export const E2E_BUCKETS = [
  0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
];

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly bounds: number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(value: number) {
    this.sum += value;
    this.count += 1;
    this.bounds.forEach((bound, i) => {
      if (value <= bound) this.counts[i] = (this.counts[i] ?? 0) + 1;
    });
  }

  lines(name: string, labels: string): string[] {
    return [
      ...this.bounds.map((bound, i) => `${name}_bucket{${labels},le="${float(bound)}"} ${float(this.counts[i] ?? 0)}`),
      `${name}_bucket{${labels},le="+Inf"} ${float(this.count)}`,
      `${name}_count{${labels}} ${float(this.count)}`,
      `${name}_sum{${labels}} ${float(this.sum)}`,
    ];
  }
}

/** Numbers as Python's prometheus_client writes them: 1.0, 0.25, 1e-05. */
export function float(value: number): string {
  return Number.isInteger(value) ? `${value}.0` : String(value);
}

/** Which metric names a vLLM version exposes where they were renamed: see the README. */
export function metricNames(version: string): { oldNames: boolean; newNames: boolean } {
  const match = /^(\d+)\.(\d+)/.exec(version);
  const [major, minor] = match ? [Number(match[1]), Number(match[2])] : [0, 11];
  const before = (a: number, b: number) => major < a || (major === a && minor < b);
  return { oldNames: before(0, 11), newNames: !before(0, 10) };
}

export interface Family {
  name: string;
  type: "gauge" | "counter" | "histogram";
  help: string;
  lines: string[];
}

export function render(families: Family[]): string {
  return `${families.flatMap((f) => [`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...f.lines]).join("\n")}\n`;
}
