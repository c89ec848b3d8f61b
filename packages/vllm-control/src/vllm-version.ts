import { basename } from "node:path";
import { execa } from "execa";
import { splitCommand } from "./canary-launcher.ts";
import { vllmExecutable } from "./executable.ts";

export type VllmCommandCheck = { ok: true; version: string | null; detail: string } | { ok: false; detail: string };

/** Importing vLLM loads torch: tens of seconds on a cold cache is normal. */
const DEFAULT_TIMEOUT_MS = 60_000;

/**
 * Whether KLR_VLLM_COMMAND can start vLLM at all, by running it the harmless way: `vllm --version`
 * for the CLI form, `python -c "import vllm"` for the module form (`python3 -m vllm.entrypoints…`).
 * Any other executable (a wrapper script) is only found, never run: given `--version` it might
 * start a server and take the GPU.
 */
export async function checkVllmCommand(
  vllmCommand: string,
  env: Readonly<Record<string, string | undefined>>,
  options: { timeoutMs?: number } = {},
): Promise<VllmCommandCheck> {
  const { found, problem } = vllmExecutable(vllmCommand, env);
  if (found === null) return { ok: false, detail: problem };
  const words = splitCommand(vllmCommand, "KLR_VLLM_COMMAND");
  const probe = probeOf(found, words);
  if (probe === null) return { ok: true, version: null, detail: `KLR_VLLM_COMMAND starts ${found} (a wrapper: found, not run)` };
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  // Its own process group, killed whole: a child it forked must not keep the pipes (and us) open.
  const child = execa(found, probe.args, { env: { ...env }, extendEnv: false, reject: false, all: true, stdin: "ignore", detached: true });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    if (child.pid !== undefined) killGroup(child.pid);
  }, timeoutMs);
  const result = await child.finally(() => clearTimeout(timer));
  const shown = [found, ...probe.args].join(" ");
  const output = (result.all ?? "").trim();
  if (timedOut) return { ok: false, detail: `\`${shown}\` did not finish in ${timeoutMs / 1000} s` };
  if (result.exitCode === undefined && result.signal === undefined) {
    // Found but not started (EACCES on a noexec mount, a missing interpreter of a script).
    const why = "shortMessage" in result && typeof result.shortMessage === "string" ? result.shortMessage : "it did not start";
    return { ok: false, detail: `\`${shown}\` could not be started: ${why}` };
  }
  if (result.exitCode !== 0) {
    // Python's last line names the failure (ModuleNotFoundError, an ImportError of torch, a CUDA library).
    const last = output.split("\n").at(-1) ?? "";
    return { ok: false, detail: `\`${shown}\` failed (exit ${String(result.exitCode ?? result.signal)})${last ? `: ${last}` : ""}` };
  }
  const version = /\b(\d+\.\d+(?:\.\d+)?(?:[.+-][\w.]+)?)\s*$/.exec(output)?.[1] ?? null;
  return { ok: true, version, detail: `\`${shown}\` works${version ? `: vLLM ${version}` : ""}` };
}

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // already gone
  }
}

function probeOf(found: string, words: readonly string[]): { args: string[] } | null {
  const name = basename(found);
  if (name === "vllm") return { args: ["--version"] };
  const module = words[words.indexOf("-m") + 1];
  if (/^python[\d.]*$/.test(name) && words.includes("-m") && module !== undefined && /^vllm(\.|$)/.test(module))
    return { args: ["-c", "import vllm; print(vllm.__version__)"] };
  return null;
}
