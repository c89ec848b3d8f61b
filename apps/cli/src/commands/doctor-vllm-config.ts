import { execFile } from "node:child_process";
import type { Config } from "@gpu-canary/config";
import { messageOf } from "@gpu-canary/errors";
import { commandLineProblems, execStartArgvs, readVllmConfig } from "@gpu-canary/vllm-control";
import type { Check } from "./doctor.ts";

/** systemctl's answer, or why there is none. */
function systemctlShow(unit: string, env: Record<string, string>): Promise<{ stdout: string; problem: string }> {
  return new Promise((resolve) => {
    execFile("systemctl", ["show", "-p", "ExecStart", unit], { timeout: 10_000, env }, (error, stdout, stderr) =>
      resolve({ stdout, problem: error ? stderr.trim() || error.message : "" }),
    );
  });
}

/**
 * KLR_VLLM_CONFIG: the file reads as vLLM's --config, and production's start passes it and no tuned
 * flag beside it (vLLM lets the command line win without a word, so an applied value would be ignored).
 */
export async function vllmConfigCheck(config: Config, env: Record<string, string>): Promise<Check> {
  const name = "production_config";
  const path = config.vllmConfigFile;
  if (path === undefined)
    return {
      name,
      ok: true,
      detail:
        "KLR_VLLM_CONFIG is not set: gpu-canary tests candidates; to apply one, production reads its settings from a vLLM --config file",
      fix: null,
    };
  try {
    const file = await readVllmConfig(path);
    const util =
      file.gpuMemoryUtilization === null
        ? "no gpu-memory-utilization (vLLM's default)"
        : `gpu-memory-utilization ${file.gpuMemoryUtilization}`;
    let argv: string[];
    let where: string;
    if (config.serviceManager === "systemd") {
      const shown = await systemctlShow(config.vllmService, env);
      const first = execStartArgvs(shown.stdout)[0];
      if (!first)
        return {
          name,
          ok: false,
          detail: `${path} sets ${util}, but systemctl shows no ExecStart for ${config.vllmService}${shown.problem ? `: ${shown.problem}` : ""}`,
          fix: "set KLR_VLLM_SERVICE to production's unit",
        };
      argv = first;
      where = `${config.vllmService}'s ExecStart`;
    } else {
      // A shell command: its words are enough to find the flags.
      argv = (config.productionStartCommand ?? "").split(/\s+/).map((w) => w.replace(/^['"]|['"]$/g, ""));
      where = "KLR_PRODUCTION_START_COMMAND";
    }
    const problems = commandLineProblems(argv, path);
    if (problems.length > 0)
      return {
        name,
        ok: false,
        detail: `${path} sets ${util}, but ${where}: ${problems.join("; ")}`,
        fix: `start production with \`vllm serve … --config ${path}\` and no --gpu-memory-utilization on the command line (${
          config.serviceManager === "systemd"
            ? `systemctl edit ${config.vllmService}, then systemctl daemon-reload`
            : "edit KLR_PRODUCTION_START_COMMAND"
        })`,
      };
    return { name, ok: true, detail: `${path} sets ${util}; ${where} passes --config ${path} and no tuned flag`, fix: null };
  } catch (error) {
    const hint = typeof error === "object" && error !== null && "hint" in error && typeof error.hint === "string" ? error.hint : null;
    return { name, ok: false, detail: messageOf(error), fix: hint ?? `fix ${path}, or unset KLR_VLLM_CONFIG` };
  }
}
