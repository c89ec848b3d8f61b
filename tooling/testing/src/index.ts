import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onTestFinished } from "vitest";

/** A fresh temp folder, removed when the current test finishes. */
export async function testdir(prefix = "gpu-canary-"): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

/** A clock that always answers the same instant. */
export function fixedNow(iso: string): () => Date {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) throw new Error(`fixedNow: not an ISO instant: ${iso}`);
  return () => new Date(ms);
}

/** A clock tests move by hand. */
export function manualClock(iso: string): { now: () => Date; set: (iso: string) => void; advance: (ms: number) => void } {
  let ms = Date.parse(iso);
  return {
    now: () => new Date(ms),
    set: (next) => {
      ms = Date.parse(next);
    },
    advance: (delta) => {
      ms += delta;
    },
  };
}

export interface ProcessResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const require = createRequire(import.meta.url);
const tsxLoader = require.resolve("tsx");

/** The node arguments that run a TypeScript file on sources (no build step), as the tests do. */
export function tsNodeArgs(file: string, args: readonly string[] = []): string[] {
  return ["--conditions=@gpu-canary/source", "--import", tsxLoader, file, ...args];
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
  timeoutMs?: number;
}

/** Run `node <args>` as a real child process, collect its output, kill it if it overstays. */
export function runNode(args: readonly string[], options: RunOptions = {}): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? "");
  });
}

/** Run a TypeScript file as a child process on sources. */
export function runTs(file: string, args: readonly string[] = [], options: RunOptions = {}): Promise<ProcessResult> {
  return runNode(tsNodeArgs(file, args), options);
}

/**
 * A PID that no process can have: above the kernel's pid_max. A PID taken from a child that
 * exited is not safe in tests: with pid_max at 32768 and many processes starting, the kernel
 * hands it to someone else within seconds.
 */
export function deadPid(): number {
  let pidMax = 4_194_304;
  try {
    pidMax = Number(readFileSync("/proc/sys/kernel/pid_max", "utf8").trim()) || pidMax;
  } catch {
    // not Linux: the default maximum
  }
  return pidMax + 1 + Math.floor(Math.random() * 1000);
}
export { BENCH_RESULTS, recordBench } from "./bench-results.ts";
export type { BenchRow } from "./bench-results.ts";

/**
 * Poll `check` until it answers something truthy and return that; past the timeout, fail naming
 * what was awaited (`what` may be a function, to add what is known only then, such as a log).
 */
export async function until<T>(
  check: () => T | null | undefined | false | Promise<T | null | undefined | false>,
  what: string | (() => string),
  options: { timeoutMs?: number; pollMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 30_000);
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 50));
  }
}
export { Prober, outageOf, servingAgainAfter } from "./prober.ts";
export type { Outage, Probe } from "./prober.ts";
export { CHROMIUM_MISSING, browserEnv, chromiumExecutable, watchPage } from "./chromium.ts";
export { POSTGRES_MISSING, postgresBinDir, postgresForFile, startPostgres } from "./postgres.ts";
export type { PostgresCluster, PostgresForFile } from "./postgres.ts";
