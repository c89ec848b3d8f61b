import type { Config } from "@gpu-canary/config";
import { commandLineProblems, execStartArgvs, readVllmConfig } from "@gpu-canary/vllm-control";
import { systemctl } from "./systemctl.ts";

/**
 * KLR_VLLM_CONFIG: the file reads as vLLM's --config, and production's start passes it and no tuned
 * flag beside it (vLLM lets the command line win without a word, so an applied value would be ignored).
 */
export async function vllmConfigCheck(
  config: Config,
  env: Record<string, string>,
): Promise<{ ok: boolean; detail: string; fix?: string | null }> {
  const path = config.vllmConfigFile;
  if (path === undefined)
    return {
      ok: true,
      detail:
        "KLR_VLLM_CONFIG is not set: gpu-canary tests candidates; to apply one, production reads its settings from a vLLM --config file",
      fix: null,
    };
  // An unreadable file throws: doctor's check() shows its message and its hint.
  const file = await readVllmConfig(path);
  const util =
    file.gpuMemoryUtilization === null
      ? "no gpu-memory-utilization (vLLM's default)"
      : `gpu-memory-utilization ${file.gpuMemoryUtilization}`;
  let argv: string[];
  let where: string;
  if (config.serviceManager === "systemd") {
    const shown = await systemctl(["show", "-p", "ExecStart", config.vllmService], env);
    const first = execStartArgvs(shown.stdout)[0];
    if (!first)
      return {
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
      ok: false,
      detail: `${path} sets ${util}, but ${where}: ${problems.join("; ")}`,
      fix: `start production with \`vllm serve … --config ${path}\` and no --gpu-memory-utilization on the command line (${
        config.serviceManager === "systemd"
          ? `systemctl edit ${config.vllmService}, then systemctl daemon-reload`
          : "edit KLR_PRODUCTION_START_COMMAND"
      })`,
    };
  return { ok: true, detail: `${path} sets ${util}; ${where} passes --config ${path} and no tuned flag`, fix: null };
}
