import { spawn } from "node:child_process";
import { copyFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tsNodeArgs } from "@gpu-canary/testing";
import type { SimSite } from "@gpu-canary/vllm-sim";
import { onTestFinished } from "vitest";

const bin = join(import.meta.dirname, "..", "bin.ts");

/**
 * gpu-canaryd as a real process on a simulated site, installed as an operator would: contrib's
 * example env file in KLR_HOME, the site's settings over it, following a log file of its own.
 */
export async function startDaemon(site: SimSite, logText = "") {
  await copyFile(join(import.meta.dirname, "..", "..", "..", "..", "contrib", "kloros_env.example"), join(site.home, ".kloros_env"));
  const log = join(site.dir, "vllm.log");
  await writeFile(log, logText);
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("KLR_")));
  const child = spawn(process.execPath, tsNodeArgs(bin), {
    env: { ...clean, ...site.env, KLR_VLLM_LOG: log },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
  let ended: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve((ended = { code, signal }))),
  );
  onTestFinished(() => void child.kill("SIGKILL"));
  return { child, log, exited, ended: () => ended, stderr: () => stderr };
}
