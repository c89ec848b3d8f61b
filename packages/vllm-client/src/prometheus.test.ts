import { describe, expect, it } from "vitest";
import { firstOf, histogramDelta, histogramQuantile, histogramQuantileBucket, maxOf, parsePrometheusText, sumOf } from "./prometheus.ts";

// Lines in vLLM's /metrics format (vllm/v1/metrics/loggers.py; cache_config_info labels as CacheConfig fields).
const TEXT = `# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",gpu_memory_utilization="0.9",num_gpu_blocks="27634",engine="0"} 1.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 0.0123
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 42.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.5e+01
odd{path="C:\\\\x",q="say \\"hi\\""} NaN 1700000000000
not a sample line
`;

describe("parsePrometheusText", () => {
  it("reads names, labels (with escapes), values and skips comments and junk", () => {
    const samples = parsePrometheusText(TEXT);
    expect(samples.map((s) => s.name)).toEqual([
      "vllm:cache_config_info",
      "vllm:gpu_cache_usage_perc",
      "vllm:time_to_first_token_seconds_bucket",
      "vllm:time_to_first_token_seconds_sum",
      "odd",
    ]);
    expect(samples[0]?.labels.gpu_memory_utilization).toBe("0.9");
    expect(samples[2]?.labels.le).toBe("+Inf");
    expect(samples[3]?.value).toBe(15);
    expect(samples[4]?.labels).toEqual({ path: "C:\\x", q: 'say "hi"' });
    expect(Number.isNaN(samples[4]?.value)).toBe(true);
  });

  it("finds a series under its new name or its old one", () => {
    const samples = parsePrometheusText(TEXT);
    expect(firstOf(samples, ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"])?.value).toBe(0.0123);
    expect(firstOf(samples, ["vllm:nothing"])).toBeUndefined();
  });
});

// vLLM's request-length histograms use 1-2-5 buckets up to max_model_len (build_1_2_5_buckets in
// vllm/v1/metrics/loggers.py); cumulative counts, one series per engine.
const PROMPTS = (engine: string, counts: number[]) =>
  ["1", "2", "5", "10", "20", "50", "100", "200", "500", "1000", "2000", "5000", "+Inf"]
    .map((le, i) => `vllm:request_prompt_tokens_bucket{engine="${engine}",le="${le}",model_name="m"} ${counts[i] ?? counts.at(-1) ?? 0}`)
    .join("\n");

describe("histogramQuantile", () => {
  // 40 requests: 10 of 100-200 tokens, 20 of 1000-2000, 10 of 2000-5000.
  const one = parsePrometheusText(PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 30, 40, 40]));

  it("interpolates within the bucket the rank falls in, as PromQL's histogram_quantile", () => {
    // p50: rank 20, in (1000, 2000] holding 10..30 → 1000 + 1000 × (20 − 10) / 20.
    expect(histogramQuantile(one, "vllm:request_prompt_tokens", 0.5)).toBe(1500);
    // p95: rank 38, in (2000, 5000] holding 30..40 → 2000 + 3000 × 8 / 10.
    expect(histogramQuantile(one, "vllm:request_prompt_tokens", 0.95)).toBe(4400);
    // p10: rank 4 in (100, 200].
    expect(histogramQuantile(one, "vllm:request_prompt_tokens", 0.1)).toBe(140);
  });

  it("sums the engines' series, and answers the highest finite bound for a rank in +Inf", () => {
    const two = parsePrometheusText(
      `${PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 30, 40, 40])}\n${PROMPTS("1", [0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 30, 40, 40])}`,
    );
    expect(histogramQuantile(two, "vllm:request_prompt_tokens", 0.5)).toBe(1500);
    const beyond = parsePrometheusText(PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 10]));
    expect(histogramQuantile(beyond, "vllm:request_prompt_tokens", 0.95)).toBe(5000);
  });

  it("is null for a histogram that is absent or saw nothing", () => {
    expect(histogramQuantile(one, "vllm:request_generation_tokens", 0.5)).toBeNull();
    expect(histogramQuantile(parsePrometheusText(PROMPTS("0", [0])), "vllm:request_prompt_tokens", 0.5)).toBeNull();
  });
});

describe("histogramQuantileBucket and histogramDelta", () => {
  it("says the bucket a quantile fell in: it is only known to lie between its bounds", () => {
    const one = parsePrometheusText(PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 30, 40, 40]));
    expect(histogramQuantileBucket(one, "vllm:request_prompt_tokens", 0.95)).toEqual({ value: 4400, lower: 2000, upper: 5000 });
  });

  it("takes what a load added between two readings, series by series; a series that went down counts from 0", () => {
    const before = parsePrometheusText(
      `${PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 30, 40, 40])}\nvllm:request_prompt_tokens_count{engine="0",model_name="m"} 40`,
    );
    // 20 more requests, all of 2000-5000 tokens
    const after = parsePrometheusText(
      `${PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 10, 10, 10, 30, 60, 60])}\nvllm:request_prompt_tokens_count{engine="0",model_name="m"} 60`,
    );
    const delta = histogramDelta(before, after, "vllm:request_prompt_tokens");
    expect(delta.find((s) => s.name === "vllm:request_prompt_tokens_count")?.value).toBe(20);
    expect(histogramQuantile(delta, "vllm:request_prompt_tokens", 0.5)).toBe(3500);
    const restarted = parsePrometheusText(PROMPTS("0", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 5]));
    expect(histogramQuantile(histogramDelta(before, restarted, "vllm:request_prompt_tokens"), "vllm:request_prompt_tokens", 0.5)).toBe(
      3500,
    );
  });
});

describe("maxOf", () => {
  it("is the highest value over every label set, null when absent", () => {
    const samples = parsePrometheusText('vllm:num_requests_running{engine="0"} 3\nvllm:num_requests_running{engine="1"} 7\n');
    expect(maxOf(samples, "vllm:num_requests_running")).toBe(7);
    expect(maxOf(samples, "vllm:num_requests_waiting")).toBeNull();
  });
});

describe("sumOf", () => {
  it("totals a counter over every label set, null when absent", () => {
    const samples = parsePrometheusText('vllm:num_preemptions_total{engine="0"} 3\nvllm:num_preemptions_total{engine="1"} 2\n');
    expect(sumOf(samples, "vllm:num_preemptions_total")).toBe(5);
    expect(sumOf(samples, "vllm:prompt_tokens_total")).toBeNull();
  });
});
