import { GpuCanaryError } from "@gpu-canary/errors";

export interface GPUAllocationTestConfigOptions {
  vllmMemoryUtilMin: number;
  vllmMemoryUtilMax: number;
}

/** The bounds a candidate must keep (KLR_VLLM_MEMORY_UTIL_MIN / _MAX). */
export class GPUAllocationTestConfig {
  readonly vllmMemoryUtilMin: number;
  readonly vllmMemoryUtilMax: number;

  constructor(options: GPUAllocationTestConfigOptions) {
    const { vllmMemoryUtilMin: min, vllmMemoryUtilMax: max } = options;
    const valid = (v: number) => Number.isFinite(v) && v > 0 && v <= 1;
    if (!valid(min) || !valid(max) || min > max) {
      throw new GpuCanaryError("TEST_CONFIG_INVALID", `the bounds [${min}, ${max}] are not a range within (0, 1]`, {
        kind: "usage",
        hint: "KLR_VLLM_MEMORY_UTIL_MIN must be at most KLR_VLLM_MEMORY_UTIL_MAX, both in (0, 1]",
      });
    }
    this.vllmMemoryUtilMin = min;
    this.vllmMemoryUtilMax = max;
  }

  /** null when inside the bounds, else the sentence that names the bound */
  boundsProblem(util: number): string | null {
    if (util < this.vllmMemoryUtilMin) return `vllm_memory_util ${util} is below the minimum ${this.vllmMemoryUtilMin}`;
    if (util > this.vllmMemoryUtilMax) return `vllm_memory_util ${util} is above the maximum ${this.vllmMemoryUtilMax}`;
    return null;
  }
}
