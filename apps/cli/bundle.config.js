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
//   bundle/migrations/    the fleet database's schema (packages/fleet-store/migrations), found at lib/../migrations
//                         as fleet-store finds its own beside its src/ or dist/
//   bundle/bin/           the simulated host's executables (vllm, nvidia-smi, whisper, systemd/…),
//                         which the simulator finds at lib/../bin as it finds its own bin/ in a checkout
//
// bin/gpu-canary.js and bin/gpu-canaryd.js load bundle/lib/. Nothing is external: every dependency
// is plain JavaScript, so a command loads its entry and its chunks only. (pg's optional native
// binding, pg-native, stays a require that pg tries only when asked for it, inside a try.)
import { chmod, cp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
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

/**
 * What the commands never use, left out of the bundle because loading it is most of a command's start
 * (measured in `pnpm bench`'s cold-start rows):
 * - undici's index loads all of undici (fetch, WebSocket, caches, mocks: ~90 ms on Node 20); our code
 *   imports `request` and `Agent` only, so "undici" becomes those two, taken from undici's own modules
 *   the way its index builds them (dispatchers get `request` alone of its API: the others loaded the
 *   streams code we never run). Importing anything else from "undici" fails this build.
 * - zod's `z.locales` namespace holds every language's messages; we use none (English is zod's
 *   default, registered by its schemas themselves).
 */
const leaveOut = {
  name: "leave-out-unused",
  setup(build) {
    build.onResolve({ filter: /^undici$/ }, async (args) => {
      if (args.namespace === "undici-lite") return undefined;
      const real = await build.resolve("undici", { kind: args.kind, resolveDir: args.resolveDir, namespace: "undici-lite" });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: dirname(real.path), namespace: "undici-lite" };
    });
    build.onLoad({ filter: /.*/, namespace: "undici-lite" }, (args) => ({
      resolveDir: args.path,
      loader: "js",
      contents: `
import Dispatcher from "./lib/dispatcher/dispatcher.js";
import apiRequest from "./lib/api/api-request.js";
import Agent from "./lib/dispatcher/agent.js";
import { getGlobalDispatcher } from "./lib/global.js";
// undici's index gives every dispatcher its API this way; we use request (not stream, pipeline, upgrade, connect).
Object.assign(Dispatcher.prototype, { request: apiRequest });
// undici's request(url, options): the URL's origin and path, on options.dispatcher or the global one.
function request(url, options = {}) {
  const target = new URL(url);
  const { dispatcher = getGlobalDispatcher(), ...rest } = options;
  return apiRequest.call(dispatcher, { ...rest, origin: target.origin, path: target.pathname + target.search, method: rest.method || (rest.body ? "PUT" : "GET") });
}
export { Agent, request };
`,
    }));
    build.onResolve({ filter: /\/locales\/index\.js$/ }, (args) =>
      /[\\/]zod[\\/]/.test(args.importer) ? { path: "zod-locales", namespace: "leave-out" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "leave-out" }, () => ({ contents: "export {};", loader: "js" }));
    // undici's client requires its HTTP/2 half, and with it node:http2, when loaded; it runs only on a TLS
    // connection that negotiates h2 (allowH2, which we never set): it is loaded on its first such connection.
    build.onResolve({ filter: /^\.\/client-h2\.js$/ }, (args) =>
      /[\\/]undici[\\/]lib[\\/]dispatcher[\\/]client\.js$/.test(args.importer)
        ? { path: "client-h2-when-used", namespace: "undici-h2", pluginData: dirname(args.importer) }
        : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "undici-h2" }, (args) => ({
      contents: 'let connectH2;\nmodule.exports = (...args) => (connectH2 ??= require("./client-h2.js"))(...args);\n',
      loader: "js",
      resolveDir: args.pluginData,
    }));
    // commander requires child_process (and with it net, dgram, streams) for executable subcommands,
    // which we have none of: it gets child_process when it first uses it.
    build.onResolve({ filter: /^node:child_process$/ }, (args) =>
      /[\\/]commander[\\/]/.test(args.importer) ? { path: "child_process-when-used", namespace: "commander-lazy" } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: "commander-lazy" }, () => ({
      contents: 'module.exports = { spawn: (...args) => require("node:child_process").spawn(...args) };',
      loader: "js",
    }));
  },
};

/**
 * An import of one of our packages becomes an import of the files that define the names imported.
 * esbuild's code splitting puts whole files in chunks by following every import, used or not: a
 * command importing `windowAt` from @gpu-canary/policy's index would load every file the index names
 * and what they import (zod, the state files). Our indexes only re-export (`export { a, b as c } from
 * "./x.ts"`) and our modules do nothing when loaded, so the names can be taken from where they are
 * defined. A name the index defines itself, `import * as`, or an import this cannot read keeps the index.
 */
const ownPackage = /^@gpu-canary\/[a-z-]+$/;
const reExport = /export\s*\{([^}]*)\}\s*from\s*["']([^"']+)["']/g;
/** exported name → [the module that defines it, its name there], from an index's `export { … } from` lines */
async function reExportsOf(indexPath) {
  const names = new Map();
  for (const [, list, from] of (await readFile(indexPath, "utf8")).matchAll(reExport)) {
    for (const item of list.split(",").map((s) => s.trim())) {
      if (item === "" || item.startsWith("type ")) continue;
      const [local, exported = local] = item.split(/\s+as\s+/);
      names.set(exported, [from, local]);
    }
  }
  return names;
}
/** The value names a module's source takes from `specifier`, or null when it takes them in a way not read here. */
function namesImported(source, specifier) {
  const quoted = `["']${specifier.replace(/[/-]/g, "\\$&")}["']`;
  const patterns = [
    new RegExp(`import\\s*\\{([^{}]*)\\}\\s*from\\s*${quoted}`, "g"),
    new RegExp(`export\\s*\\{([^{}]*)\\}\\s*from\\s*${quoted}`, "g"),
    new RegExp(`(?:const|let)\\s*\\{([^{}]*)\\}\\s*=\\s*await\\s+import\\(\\s*${quoted}\\s*\\)`, "g"),
  ];
  const typeOnly = new RegExp(`(import|export)\\s+type\\s*\\{[^{}]*\\}\\s*from\\s*${quoted}`, "g");
  const uses = source.match(new RegExp(quoted, "g"))?.length ?? 0;
  let read = source.match(typeOnly)?.length ?? 0;
  const names = new Set();
  for (const pattern of patterns) {
    for (const [, list] of source.matchAll(pattern)) {
      read += 1;
      for (const item of list.split(",").map((s) => s.trim())) {
        if (item === "" || item.startsWith("type ")) continue;
        const name = item.split(/\s+as\s+|\s*:\s*/)[0];
        if (!/^[A-Za-z_$][\w$]*$/.test(name)) return null;
        names.add(name);
      }
    }
  }
  return read === uses ? names : null;
}
const namesFromDefinitions = {
  name: "names-from-definitions",
  setup(build) {
    const virtual = new Map();
    build.onResolve({ filter: ownPackage }, async (args) => {
      if (args.pluginData === "index") return undefined;
      const index = await build.resolve(args.path, {
        kind: args.kind,
        resolveDir: args.resolveDir,
        importer: args.importer,
        pluginData: "index",
      });
      if (index.errors.length > 0 || !index.path.endsWith(`${join("src", "index.ts")}`)) return index;
      const source = virtual.get(args.importer) ?? (await readFile(args.importer, "utf8"));
      const names = namesImported(source, args.path);
      const exported = await reExportsOf(index.path);
      if (names === null || names.size === 0) return { path: index.path };
      const lines = [...names].map((name) => {
        const [from, local] = exported.get(name) ?? [index.path, name];
        const target = from.startsWith(".") ? join(dirname(index.path), from) : from;
        return `export { ${local === name ? name : `${local} as ${name}`} } from ${JSON.stringify(target)};`;
      });
      const path = `${index.path}?${[...names].sort().join(",")}`;
      virtual.set(path, lines.join("\n"));
      return { path, namespace: "names-from-definitions", pluginData: dirname(index.path) };
    });
    build.onLoad({ filter: /.*/, namespace: "names-from-definitions" }, (args) => ({
      contents: virtual.get(args.path),
      resolveDir: args.pluginData,
      loader: "js",
    }));
  },
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
  plugins: [leaveOut, namesFromDefinitions],
  // CommonJS dependencies (pino, fastify, …) require Node's modules: give the ESM output a require.
  banner: { js: 'import { createRequire as __gpuCanaryRequire } from "node:module"; const require = __gpuCanaryRequire(import.meta.url);' },
});

await cp(join(root, "packages", "fleet-store", "migrations"), join(out, "migrations"), { recursive: true });

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
