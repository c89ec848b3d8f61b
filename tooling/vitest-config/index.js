// @ts-check
import { availableParallelism } from "node:os";
import { defineConfig } from "vitest/config";

/**
 * The shared test settings. `ssr.resolve.conditions` (not `resolve.conditions`) is what
 * makes vitest 4.1 pick the `@gpu-canary/source` export, so tests never wait for a build.
 *
 * At least two test files run at once: the integration tests mostly wait on the processes they
 * start (a canary's load, a vLLM's start), a third of the wall time on the CPU, so vitest's
 * default of one file at a time on two cores leaves the machine idle.
 * @param {{ testTimeout?: number }} [overrides]
 */
export function gpuCanaryVitest(overrides = {}) {
  return defineConfig({
    ssr: { resolve: { conditions: ["@gpu-canary/source"] } },
    test: {
      include: ["src/**/*.test.ts"],
      testTimeout: overrides.testTimeout ?? 20_000,
      hookTimeout: 20_000,
      pool: "forks",
      maxWorkers: Math.max(2, availableParallelism()),
      reporters: ["default"],
    },
  });
}
