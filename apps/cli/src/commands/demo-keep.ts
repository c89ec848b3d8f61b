import { existsSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * How to start this CLI as a process: the bundle's entry beside this code (bundle/lib/, see
 * bundle.config.js), the compiled bin, or the TypeScript entry through tsx on sources. tsx is named by its
 * absolute path: `--import tsx` would be looked up from the caller's working folder, which need not
 * be inside this repository.
 */
export function selfArgv(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".ts")) {
    const tsx = createRequire(import.meta.url).resolve("tsx");
    return ["--conditions=@gpu-canary/source", "--import", tsx, join(dirname(here), "..", "bin.ts")];
  }
  const bundled = join(dirname(here), "gpu-canary.js");
  return [existsSync(bundled) ? bundled : join(dirname(here), "..", "bin.js")];
}

/**
 * gpu-canaryd as this package ships it: the bundle's entry beside this code (bundle/lib/), else
 * bin/gpu-canaryd.js beside bin/gpu-canary.js (from src/ or dist/ alike), which loads the bundle.
 */
function daemonBin(): string | null {
  const here = dirname(fileURLToPath(import.meta.url));
  const bundled = join(here, "gpu-canaryd.js");
  if (existsSync(bundled)) return bundled;
  const path = join(here, "..", "..", "bin", "gpu-canaryd.js");
  return existsSync(path) ? path : null;
}

/** A word the shell reads back exactly: single quotes, each quote of its own closed and escaped. */
const shellWord = (text: string) => `'${text.replaceAll("'", `'\\''`)}'`;

/** A path as a command line to copy shows it: bare when the shell would read it as it is. */
export const shellArg = (text: string) => (/^[\w@%+=:,./-]+$/.test(text) ? text : shellWord(text));

/** A value as .kloros_env reads it: single quotes keep the commands' `$` literal; one with a quote is escaped instead. */
const envFileValue = (value: string) => (value.includes("'") ? JSON.stringify(value) : `'${value}'`);

export interface KeptDemo {
  /** the KLR_HOME the demo ran in */
  home: string;
  /** its settings, as gpu-canary reads them from KLR_HOME */
  settingsFile: string;
  /** `source` it to point gpu-canary at the kept simulated host */
  envFile: string;
}

/**
 * Keep a finished demo's folder usable: the settings it ran under in `.kloros_env` (its window and
 * zone name the night's files), and a file to `source` that points a shell's `gpu-canary` at it —
 * KLR_HOME, the simulated host that the nvidia-smi stand-in reads, and `gpu-canary` itself on PATH.
 */
export async function keepDemo(dir: string, home: string, env: Record<string, string>): Promise<KeptDemo> {
  const settingsFile = join(home, ".kloros_env");
  const settings = Object.entries(env)
    .filter(([key]) => key.startsWith("KLR_") && key !== "KLR_HOME")
    .map(([key, value]) => `${key}=${envFileValue(value)}`);
  await writeFile(settingsFile, `# the settings \`gpu-canary demo\` ran under\n${settings.join("\n")}\n`);

  const bin = join(dir, "bin");
  await mkdir(bin, { recursive: true });
  const wrapper = join(bin, "gpu-canary");
  await writeFile(
    wrapper,
    `#!/bin/sh\n# gpu-canary, as \`gpu-canary demo --keep\` ran it\nexec ${[process.execPath, ...selfArgv()].map(shellWord).join(" ")} "$@"\n`,
  );
  await chmod(wrapper, 0o755);
  // The daemon beside it (the guide's gpu-canaryd commands run as written too).
  const daemon = daemonBin();
  if (daemon !== null) {
    const daemonWrapper = join(bin, "gpu-canaryd");
    await writeFile(
      daemonWrapper,
      `#!/bin/sh\n# gpu-canaryd, as gpu-canary demo --keep found it\nexec ${[process.execPath, daemon].map(shellWord).join(" ")} "$@"\n`,
    );
    await chmod(daemonWrapper, 0o755);
  }

  // The simulator's own variables (GPU_CANARY_SIM_HOST, …): the stand-ins read them, gpu-canary does not.
  const sim = Object.entries(env).filter(([key]) => !key.startsWith("KLR_"));
  const envFile = join(dir, "demo.env");
  await writeFile(
    envFile,
    [
      "# Written by `gpu-canary demo --keep`. In a shell: source this file, then run gpu-canary as the guide shows.",
      "# KLR_* variables already exported would override the demo's settings (the environment wins over",
      "# .kloros_env) and could name a real host or another env file (KLR_ENV_FILE): they are unset first.",
      `for name in $(env | sed -n 's/^\\(KLR_[A-Za-z0-9_]*\\)=.*/\\1/p'); do unset "$name"; done`,
      `export KLR_HOME=${shellWord(home)}`,
      ...sim.map(([key, value]) => `export ${key}=${shellWord(value)}`),
      `export PATH=${shellWord(bin)}:"$PATH"`,
      "",
    ].join("\n"),
  );
  return { home, settingsFile, envFile };
}
