// @ts-check
import { gpuCanaryEslint } from "@gpu-canary/eslint-config";

export default gpuCanaryEslint(import.meta.dirname);
