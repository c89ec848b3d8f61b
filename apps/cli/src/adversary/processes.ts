import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { tsNodeArgs } from "@gpu-canary/testing";

export const CLI_BIN = join(import.meta.dirname, "..", "bin.ts");
// The daemon is not a dependency of the CLI: its entry is reached in the workspace, on sources like the CLI's.
export const DAEMON_BIN = join(import.meta.dirname, "..", "..", "..", "daemon", "src", "bin.ts");

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Proc {
  child: ChildProcess;
  exited: Promise<Exit>;
  /** set once it exited */
  ended(): Exit | null;
  stdout(): string;
  stderr(): string;
  /** SIGKILL it if it still runs (by its own pid: it is ours) */
  dispose(): void;
}

/** A TypeScript entry (the CLI's or the daemon's) as a real process on sources, as the tests run them. */
export function spawnTs(file: string, args: readonly string[], env: Record<string, string>): Proc {
  const child = spawn(process.execPath, tsNodeArgs(file, args), { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  let ended: Exit | null = null;
  child.stdout?.on("data", (c: Buffer) => (stdout += c.toString()));
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<Exit>((resolve) => {
    child.once("error", () => resolve((ended = { code: 127, signal: null })));
    // "close" once the output is complete, which the caller reads; but a grandchild that kept the
    // pipes open must not hold the row up, so the exit alone settles it a moment later.
    child.once("close", (code, signal) => resolve((ended = { code, signal })));
    child.once("exit", (code, signal) => setTimeout(() => resolve((ended ??= { code, signal })), 1000).unref());
  });
  return {
    child,
    exited,
    ended: () => ended,
    stdout: () => stdout,
    stderr: () => stderr,
    dispose: () => {
      if (ended === null) child.kill("SIGKILL");
    },
  };
}

/** The environment without the caller's KLR_* settings, so only the simulated site's apply. */
export function cleanEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter((entry): entry is [string, string] => !entry[0].startsWith("KLR_") && entry[1] !== undefined),
  );
}

export interface CliAnswer {
  exit: Exit;
  json: Record<string, unknown> | null;
  stderr: string;
}

export function asRecord(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

function parseJson(text: string): Record<string, unknown> | null {
  try {
    return asRecord(JSON.parse(text));
  } catch {
    return null;
  }
}

/** `gpu-canary <args> --json` as a process, killed past the timeout; its JSON document parsed. */
export async function cliJson(args: readonly string[], env: Record<string, string>, timeoutMs: number): Promise<CliAnswer> {
  const proc = spawnTs(CLI_BIN, [...args, "--json"], env);
  const timer = setTimeout(() => proc.dispose(), timeoutMs);
  try {
    const exit = await proc.exited;
    return { exit, json: parseJson(proc.stdout()), stderr: proc.stderr() };
  } finally {
    clearTimeout(timer);
  }
}

/** What a process's end looks like in the table: its exit code, or the signal that ended it. */
export function exitText(exit: Exit | null): string {
  if (exit === null) return "running";
  return exit.signal ?? String(exit.code);
}

/** The `status` (or the error code) of a JSON document the CLI printed. */
export function statusOf(stdout: string): string | null {
  const doc = parseJson(stdout);
  if (!doc) return null;
  const error = asRecord(doc.error);
  if (error) return `error ${String(error.code)}`;
  return typeof doc.status === "string" ? doc.status : null;
}
