// @ts-check
import { defineConfig } from "vitest/config";

/**
 * The shared test settings. `ssr.resolve.conditions` (not `resolve.conditions`) is what
 * makes vitest 4.1 pick the `@gpu-canary/source` export, so tests never wait for a build.
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
      reporters: ["default"],
    },
  });
}
