#!/usr/bin/env node
// pnpm links bins at install, before any build: this committed shim imports the compiled
// entry, so a fresh clone's bin exists. `pnpm install` builds dist/ through the root prepare.
import("../dist/bin.js").catch((error) => {
  if (error && error.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("dist/bin.js")) {
    process.stderr.write("gpu-canary is not built yet: run `pnpm install` (or `pnpm build`) at the repository root.\n");
    process.exit(4);
  }
  throw error;
});
