#!/usr/bin/env node
// gpu-canaryd, installed with the CLI (`npm install -g @gpu-canary/cli` puts both commands on PATH):
// the daemon package's compiled entry. In a checkout, `pnpm install` builds it through the root prepare.
import("@gpu-canary/daemon/bin").catch((error) => {
  if (error && error.code === "ERR_MODULE_NOT_FOUND" && String(error.message).includes("dist/bin.js")) {
    process.stderr.write("gpu-canaryd is not built yet: run `pnpm install` (or `pnpm build`) at the repository root.\n");
    process.exit(4);
  }
  throw error;
});
