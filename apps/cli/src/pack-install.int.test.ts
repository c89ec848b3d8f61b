import { execFile } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { startPostgres } from "@gpu-canary/testing";
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";

const run = promisify(execFile);

/** Run a command to its end, whatever its exit code: its output and the code. */
function runToEnd(file: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd: string; timeout?: number }) {
  return new Promise<{ stdout: string; stderr: string; code: number | null }>((resolve) => {
    const child = execFile(file, args, { ...options, maxBuffer: 64 * 1024 * 1024 }, (_error, stdout, stderr) =>
      resolve({ stdout, stderr, code: child.exitCode }),
    );
  });
}
const root = join(import.meta.dirname, "..", "..", "..");

/** Every package of the workspace that is published (not `private`), with its folder. */
function publishedPackages(): { name: string; dir: string }[] {
  const found: { name: string; dir: string }[] = [];
  for (const group of ["apps", "packages", "tooling"]) {
    for (const entry of readdirSync(join(root, group))) {
      const dir = join(root, group, entry);
      const file = join(dir, "package.json");
      if (!existsSync(file)) continue;
      const manifest = JSON.parse(readFileSync(file, "utf8")) as { name: string; private?: boolean };
      if (manifest.private !== true) found.push({ name: manifest.name, dir });
    }
  }
  return found;
}

/** The environment an operator's shell would give: no KLR_* settings, a fresh home, npm's own defaults. */
function operatorEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith("KLR_") || key.startsWith("npm_") || key.startsWith("PNPM_") || key === "NODE_OPTIONS") continue;
    env[key] = value;
  }
  return { ...env, HOME: home, NO_COLOR: "1" };
}

/**
 * Packed and installed as an operator gets it: each published package through `pnpm pack` (which
 * turns `workspace:` and `catalog:` ranges into versions), the tarballs installed with npm into a
 * prefix outside the workspace, and the installed `gpu-canary` run from there. The packages' dist/
 * must be built: turbo builds them before this package's tests (turbo.json), `pnpm install` too.
 * Third-party dependencies come from the caller's npm cache (~/.npm), else from the registry.
 */
describe("the packed packages, installed with npm outside the workspace", () => {
  let dir = "";
  let bin = "";
  let cliDir = "";
  let env: NodeJS.ProcessEnv = {};

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "gpu-canary-pack-"));
    const tarballs = join(dir, "tarballs");
    const prefix = join(dir, "prefix");
    const home = join(dir, "home");
    await Promise.all([mkdir(tarballs), mkdir(prefix), mkdir(home)]);
    env = operatorEnv(home);
    const packages = publishedPackages();
    for (const { name, dir: packageDir } of packages) {
      if (!existsSync(join(packageDir, "dist"))) throw new Error(`${name} is not built: run \`pnpm build\` at the repository root`);
    }
    if (!existsSync(join(root, "apps", "cli", "bundle", "lib", "gpu-canary.js")))
      throw new Error("gpu-canary's bundle is not built: run `pnpm build` at the repository root");
    // Two at a time: pnpm's start is most of each pack.
    for (let i = 0; i < packages.length; i += 2) {
      await Promise.all(
        packages.slice(i, i + 2).map(({ dir: packageDir }) => run("pnpm", ["pack", "--pack-destination", tarballs], { cwd: packageDir })),
      );
    }
    const files = readdirSync(tarballs).map((file) => join(tarballs, file));
    expect(files).toHaveLength(packages.length);
    // A package.json of its own, so npm never walks up into a workspace.
    await writeFile(join(prefix, "package.json"), `${JSON.stringify({ name: "operator-host", private: true })}\n`);
    // npm keeps only the bins' modes: the CLI's postinstall makes the simulated host's stand-ins executable.
    const installed = await runToEnd(
      "npm",
      ["install", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", "--omit=dev", "--loglevel=error", ...files],
      { cwd: prefix, env: { ...env, npm_config_cache: join(homedir(), ".npm") }, timeout: 240_000 },
    );
    expect(installed.code, installed.stderr).toBe(0);
    bin = join(prefix, "node_modules", ".bin");
    cliDir = join(prefix, "node_modules", "@gpu-canary", "cli");
  }, 300_000);

  afterAll(async () => {
    if (dir !== "") await rm(dir, { recursive: true, force: true });
  });

  it("gives gpu-canary and gpu-canaryd, each answering --version with the CLI package's version", async () => {
    const { version } = JSON.parse(readFileSync(join(root, "apps", "cli", "package.json"), "utf8")) as { version: string };
    const cli = await run(join(bin, "gpu-canary"), ["--version"], { env, cwd: dir });
    expect(cli.stdout.trim()).toBe(version);
    // gpu-canaryd ships in the CLI's package (its bundle): the CLI package's version.
    const daemon = await run(join(bin, "gpu-canaryd"), ["--version"], { env, cwd: dir });
    expect(daemon.stdout.trim()).toBe(version);
  });

  it("ships the systemd unit, the polkit rule and the example settings the guide copies", () => {
    for (const file of ["gpu-canaryd.service", "gpu-canary.polkit.rules", "kloros_env.example"])
      expect(existsSync(join(cliDir, "contrib", file)), file).toBe(true);
    expect(readFileSync(join(cliDir, "contrib", "gpu-canaryd.service"), "utf8")).toContain("ExecStart=/usr/bin/env gpu-canaryd");
  });

  it("runs doctor --json: its checks as JSON, whatever this host lacks", async () => {
    const result = await runToEnd(join(bin, "gpu-canary"), ["doctor", "--json"], { env, cwd: dir });
    const doc = JSON.parse(result.stdout) as { checks?: unknown[] };
    expect(Array.isArray(doc.checks)).toBe(true);
  });

  it("runs fleet init against a real PostgreSQL with the schema it ships (bundle/migrations)", async () => {
    const cluster = await startPostgres();
    onTestFinished(() => cluster.close());
    const url = await cluster.createDatabase("installed");
    const home = join(dir, "fleet-home");
    await mkdir(home);
    const result = await runToEnd(join(bin, "gpu-canary"), ["fleet", "init", "--json"], {
      env: { ...env, KLR_HOME: home, KLR_STATE_URL: url, KLR_HOST_ID: "gpu-installed" },
      cwd: dir,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ from: 0, to: 4, host_id: "gpu-installed" });
  }, 60_000);

  it("runs the demo on the simulated host that ships with it", async () => {
    const result = await runToEnd(join(bin, "gpu-canary"), ["demo", "--json"], { env, cwd: dir, timeout: 170_000 });
    const doc = JSON.parse(result.stdout.split(/\n(?=\{)/)[0] ?? "") as { ok: boolean; steps: { title: string; ok: boolean }[] };
    expect(
      doc.steps.filter((s) => !s.ok),
      result.stderr,
    ).toEqual([]);
    expect(doc.ok).toBe(true);
    expect(result.code).toBe(0);
  }, 180_000);
});
