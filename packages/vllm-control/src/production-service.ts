import { setTimeout as sleep } from "node:timers/promises";
import type { GpuProbe } from "@gpu-canary/gpu-probe";
import { ControlError } from "./errors.ts";
import { splitArguments } from "@gpu-canary/config";
import { type ProcInfo, descendants, listenersOf, readEnviron } from "./procfs.ts";
import { runArgv, runOperatorCommand } from "./shell.ts";

export type ServiceManager =
  { kind: "systemd"; unit: string; systemctl?: string } | { kind: "command"; stopCommand?: string; startCommand?: string };

export interface ProductionServiceDeps {
  manager: ServiceManager;
  /** production's port (from KLR_VLLM_URL) */
  port: number;
  /** KLR_VLLM_PROCESS: names production's GPU processes (case-insensitive substring) */
  vllmProcess: string;
  /** KLR_PRODUCTION_GPU_ID */
  gpuIndex: number;
  /** to see production's GPU memory released; without it only the port is watched */
  probe?: GpuProbe;
  env?: Record<string, string>;
}

export interface ProductionService {
  readonly description: string;
  /** stop, then wait until the port is closed and, where nvidia-smi can tell, production's GPU memory is released */
  stop(timeoutMs: number): Promise<{ seconds: number }>;
  /** returns once the start command succeeded; readiness is the vLLM client's job */
  start(timeoutMs: number): Promise<void>;
  isActive(): Promise<"active" | "inactive" | "unknown">;
  /** production's own processes: the unit's main process tree (systemd), and the port's listener with its descendants */
  processes(): Promise<ProcInfo[]>;
  /** production's processes still on the GPU (orphaned engines hold memory after a hard kill) */
  gpuHolders(): Promise<{ pid: number; name: string; usedMemoryMib: number | null }[]>;
  /**
   * The environment production runs with: its processes' own (readable when gpu-canary runs as
   * production's user, or root), else the systemd unit's `Environment=`; null when neither tells.
   */
  environment(): Promise<{ env: Record<string, string>; source: string } | null>;
}

export function createProductionService(deps: ProductionServiceDeps): ProductionService {
  const manager = deps.manager;
  const match = deps.vllmProcess.toLowerCase();
  const description =
    manager.kind === "systemd" ? `systemd unit ${manager.unit}` : "the production commands (KLR_PRODUCTION_STOP_COMMAND / _START_COMMAND)";

  const systemctl = (args: string[], timeoutMs: number) =>
    runArgv(manager.kind === "systemd" ? (manager.systemctl ?? "systemctl") : "systemctl", args, timeoutMs);

  const processes = async (): Promise<ProcInfo[]> => {
    const roots = listenersOf(deps.port).map((p) => p.pid);
    if (manager.kind === "systemd") {
      const show = await systemctl(["show", "-p", "MainPID", "--value", manager.unit], 10_000);
      const mainPid = Number(show.output.trim().split("\n").at(-1));
      if (Number.isInteger(mainPid) && mainPid > 0) roots.push(mainPid);
    }
    const byPid = new Map<number, ProcInfo>();
    for (const root of roots) for (const p of descendants(root)) byPid.set(p.pid, p);
    return [...byPid.values()];
  };

  const gpuHolders = async () => {
    if (!deps.probe) return [];
    const known = new Set((await processes()).map((p) => p.pid));
    const report = await deps.probe.report();
    const gpu = report.gpus.find((g) => g.index === deps.gpuIndex);
    return (gpu?.processes ?? [])
      .filter((p) => known.has(p.pid) || p.name.toLowerCase().includes(match))
      .map((p) => ({ pid: p.pid, name: p.name, usedMemoryMib: p.usedMemoryMib }));
  };

  const environment = async () => {
    for (const p of await processes().catch(() => [])) {
      const env = readEnviron(p.pid);
      if (env) return { env, source: `production's process environment (PID ${p.pid})` };
    }
    if (manager.kind !== "systemd") return null;
    // Environment= only: what EnvironmentFile= adds shows in the running process's environment.
    const show = await systemctl(["show", "-p", "Environment", "--value", manager.unit], 10_000);
    const text = show.output.trim();
    if (show.exitCode !== 0 || text === "") return null;
    const split = splitArguments(text);
    const words = split.ok ? split.value : text.split(/\s+/);
    const env = Object.fromEntries(
      words.filter((w) => w.indexOf("=") > 0).map((w) => [w.slice(0, w.indexOf("=")), w.slice(w.indexOf("=") + 1)]),
    );
    return Object.keys(env).length > 0 ? { env, source: `${manager.unit}'s Environment=` } : null;
  };

  /** `systemctl stop|start UNIT`, or the operator's stop/start command; a failure names what to check. */
  const act = async (verb: "stop" | "start", timeoutMs: number) => {
    const code = verb === "stop" ? "PRODUCTION_STOP_FAILED" : "PRODUCTION_START_FAILED";
    if (manager.kind === "systemd") {
      const result = await systemctl([verb, manager.unit], timeoutMs);
      if (result.exitCode !== 0) {
        throw new ControlError(
          code,
          `systemctl ${verb} ${manager.unit} failed: ${result.output.trim()}`,
          "see `systemctl status` and `journalctl -u` for the unit",
        );
      }
      return;
    }
    const variable = `KLR_PRODUCTION_${verb.toUpperCase()}_COMMAND`;
    const command = verb === "stop" ? manager.stopCommand : manager.startCommand;
    if (!command) {
      throw new ControlError(
        "PRODUCTION_NOT_CONFIGURED",
        `${variable} is not set`,
        "set KLR_PRODUCTION_STOP_COMMAND and KLR_PRODUCTION_START_COMMAND for the command manager",
      );
    }
    const result = await runOperatorCommand(command, { env: deps.env, timeoutMs });
    if (result.exitCode !== 0) {
      throw new ControlError(
        code,
        `the ${verb} command exited with ${String(result.exitCode)}: ${result.output.trim()}`,
        `run ${variable} by hand to see why`,
      );
    }
  };

  const waitDown = async (started: number, timeoutMs: number) => {
    for (;;) {
      const listening = listenersOf(deps.port).length > 0;
      const holders = listening ? [] : await gpuHolders();
      if (!listening && holders.length === 0) return;
      if (Date.now() - started > timeoutMs) {
        const what = listening
          ? `port ${deps.port} is still open`
          : `its GPU memory is still held by ${holders.map((h) => `PID ${h.pid} (${h.name})`).join(", ")}`;
        throw new ControlError(
          "PRODUCTION_STOP_FAILED",
          `production did not go down within ${timeoutMs / 1000} s: ${what}`,
          "orphaned vLLM engine processes can keep the GPU after a hard kill: check `nvidia-smi` and stop them",
          {
            holders,
          },
        );
      }
      await sleep(100);
    }
  };

  return {
    description,
    processes,
    gpuHolders,
    environment,
    async stop(timeoutMs) {
      const started = Date.now();
      await act("stop", timeoutMs);
      await waitDown(started, timeoutMs);
      return { seconds: (Date.now() - started) / 1000 };
    },
    async start(timeoutMs) {
      await act("start", timeoutMs);
    },
    async isActive() {
      if (manager.kind === "systemd") {
        const result = await systemctl(["is-active", manager.unit], 10_000);
        const state = result.output.trim().split("\n").at(-1);
        if (state === "active" || state === "activating" || state === "reloading") return "active";
        if (state === "inactive" || state === "failed" || state === "deactivating") return "inactive";
        return "unknown";
      }
      return listenersOf(deps.port).length > 0 ? "active" : "inactive";
    },
  };
}
