// @ts-check
// The one build config of the shipped commands: gpu-canary and gpu-canaryd bundled with esbuild,
// from the workspace's TypeScript sources, into bundle/ — the layout the code finds its files by:
//
//   bundle/package.json   name and version (the CLI's `--version`, and gpu-canaryd's: it ships in this package)
//   bundle/lib/           the entry points and the chunks they share (ESM, split, source maps beside):
//                         gpu-canary.js, gpu-canaryd.js, and the scripts started as processes, each
//                         found beside the code that starts it (import.meta.url): watchdog-main.js (the
//                         restore watchdog), vllm-main.js, nvidia-smi-main.js, whisper-main.js and
//                         systemd-main.js (the simulated host of `gpu-canary demo`)
//   bundle/bin/           the simulated host's executables (vllm, nvidia-smi, whisper, systemd/…),
//                         which the simulator finds at lib/../bin as it finds its own bin/ in a checkout
//
// bin/gpu-canary.js and bin/gpu-canaryd.js load bundle/lib/. Nothing is external: every dependency
// is plain JavaScript (no native or optional module), so a command loads its entry and its chunks only.
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import * as esbuild from "esbuild";

const here = import.meta.dirname;
const root = join(here, "..", "..");
const out = join(here, "bundle");

const entryPoints = {
  "gpu-canary": join(here, "src", "bin.ts"),
  "gpu-canaryd": join(root, "apps", "daemon", "src", "bin.ts"),
  "watchdog-main": join(root, "packages", "vllm-control", "src", "watchdog-main.ts"),
  "vllm-main": join(root, "tooling", "vllm-sim", "src", "vllm-main.ts"),
  "nvidia-smi-main": join(root, "tooling", "vllm-sim", "src", "nvidia-smi-main.ts"),
  "whisper-main": join(root, "tooling", "vllm-sim", "src", "whisper-main.ts"),
  "systemd-main": join(root, "tooling", "vllm-sim", "src", "systemd-main.ts"),
};

/** The simulated host's executables: name → [entry, its first arguments]. */
const simBins = {
  vllm: ["vllm-main", ""],
  "nvidia-smi": ["nvidia-smi-main", ""],
  whisper: ["whisper-main", ""],
  "systemd/systemctl": ["systemd-main", " systemctl"],
  "systemd/journalctl": ["systemd-main", " journalctl"],
  "systemd/systemd-run": ["systemd-main", " systemd-run"],
};

await rm(out, { recursive: true, force: true });
await esbuild.build({
  entryPoints,
  outdir: join(out, "lib"),
  chunkNames: "chunk-[hash]",
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20.19",
  // The sources, as the tests run them: no package's dist/ is read.
  conditions: ["@gpu-canary/source"],
  sourcemap: true,
  sourcesContent: false,
  logLevel: "warning",
  // CommonJS dependencies (pino, fastify, …) require Node's modules: give the ESM output a require.
  banner: { js: 'import { createRequire as __gpuCanaryRequire } from "node:module"; const require = __gpuCanaryRequire(import.meta.url);' },
});

const manifest = JSON.parse(await readFile(join(here, "package.json"), "utf8"));
await writeFile(
  join(out, "package.json"),
  `${JSON.stringify({ name: manifest.name, version: manifest.version, type: "module" }, null, 2)}\n`,
);

for (const [name, [entry, args]] of Object.entries(simBins)) {
  const file = join(out, "bin", name);
  const up = name.includes("/") ? "../.." : "..";
  await mkdir(dirname(file), { recursive: true });
  await writeFile(
    file,
    `#!/bin/sh\n# gpu-canary demo's simulated ${name} (written by apps/cli/bundle.config.js)\nhere=$(dirname "$(readlink -f "$0")")\nexec node "$here/${up}/lib/${entry}.js"${args} "$@"\n`,
  );
  await chmod(file, 0o755);
}
