// @ts-check
import { gpuCanaryEslint } from "@gpu-canary/eslint-config";

// local-time.ts is where civil dates are made: every other module asks it (or luxon) for one.
export default gpuCanaryEslint(import.meta.dirname, { ownsDates: ["src/local-time.ts"] });
