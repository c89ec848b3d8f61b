import { describe, expect, it } from "vitest";
import { firstOf, parsePrometheusText } from "./prometheus.ts";

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
