#!/usr/bin/env node
// The shipped command: the bundle (apps/cli/bundle.config.js), one entry and the chunks it uses. pnpm links
// bins at install, before any build: this committed shim exists on a fresh clone, and `pnpm install`
// builds the bundle through the root prepare. Node >= 22.1 keeps its compiled code between runs.
import module from "node:module";

module.enableCompileCache?.();
import("../bundle/lib/gpu-canary.js").catch((error) => {
  if (error && error.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("bundle/lib/gpu-canary.js")) {
    process.stderr.write("gpu-canary is not built yet: run `pnpm install` (or `pnpm build`) at the repository root.\n");
    process.exit(4);
  }
  throw error;
});
