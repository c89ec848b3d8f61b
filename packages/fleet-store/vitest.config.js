// @ts-check
import { gpuCanaryVitest } from "@gpu-canary/vitest-config";

export default gpuCanaryVitest();
