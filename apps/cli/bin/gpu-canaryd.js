#!/usr/bin/env node
// gpu-canaryd, shipped with the CLI (`npm install -g @gpu-canary/cli` puts both commands on PATH): the
// bundle's daemon entry (apps/cli/bundle.config.js). In a checkout, `pnpm install` builds it through the root
// prepare. Node >= 22.1 keeps its compiled code between runs.
import module from "node:module";

module.enableCompileCache?.();
import("../bundle/lib/gpu-canaryd.js").catch((error) => {
  if (error && error.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("bundle/lib/gpu-canaryd.js")) {
    process.stderr.write("gpu-canaryd is not built yet: run `pnpm install` (or `pnpm build`) at the repository root.\n");
    process.exit(4);
  }
  throw error;
});
