import { existsSync } from "node:fs";
import { join } from "node:path";
import { type ProcessResult, type RunOptions, runNode } from "@gpu-canary/testing";

/** The shipped gpu-canary: bin/gpu-canary.js, which loads the bundle (bundle.config.js); turbo builds it before these tests. */
export const SHIPPED_BIN = join(import.meta.dirname, "..", "..", "bin", "gpu-canary.js");
const BUNDLE = join(import.meta.dirname, "..", "..", "bundle", "lib", "gpu-canary.js");

/** The node arguments that run the shipped gpu-canary with `args`. */
export function shippedArgs(args: readonly string[]): string[] {
  if (!existsSync(BUNDLE)) throw new Error("gpu-canary's bundle is not built: run `pnpm build` (turbo builds it before `pnpm test`)");
  return [SHIPPED_BIN, ...args];
}

/** Run the shipped gpu-canary as a child process. */
export function runShipped(args: readonly string[], options: RunOptions = {}): Promise<ProcessResult> {
  return runNode(shippedArgs(args), options);
}
