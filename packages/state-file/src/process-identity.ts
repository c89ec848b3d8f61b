import { readFileSync } from "node:fs";
import { errnoCode } from "@gpu-canary/errors";

/**
 * What we can prove about a PID on this host. `dead` covers a vanished PID and a zombie
 * (kill(pid, 0) still answers for a zombie, /proc does not lie about it).
 */
export type ProcessProbe =
  { state: "alive"; startToken: string | null } | { state: "dead"; why: "gone" | "zombie" } | { state: "unknown"; why: string };

export interface ProcessInspector {
  probe(pid: number): ProcessProbe;
  /** this process's own start token, written into lock records */
  selfToken(): string | null;
}

export function isValidPid(pid: unknown): pid is number {
  // 0 and negatives would make kill() target a process group or every process.
  return typeof pid === "number" && Number.isInteger(pid) && pid >= 1 && pid <= 2 ** 31 - 1;
}

/**
 * Field 3 (state) and field 22 (starttime, clock ticks since boot) of /proc/<pid>/stat.
 * The command name (field 2) sits in parentheses and may itself hold spaces and ")".
 */
export function parseProcStat(text: string): { state: string; startTime: string } | null {
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const fields = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return null;
  return { state, startTime };
}

export interface LinuxInspectorDeps {
  readText?: (path: string) => string;
  kill?: (pid: number, signal: 0) => void;
  selfPid?: number;
}

/** Liveness from /proc (Linux), with kill(pid, 0) where /proc is not mounted. */
export function createProcessInspector(deps: LinuxInspectorDeps = {}): ProcessInspector {
  const readText = deps.readText ?? ((path: string) => readFileSync(path, "utf8"));
  const kill = deps.kill ?? ((pid: number, signal: 0) => void process.kill(pid, signal));
  let bootId: string | null | undefined;

  const getBootId = (): string | null => {
    if (bootId === undefined) {
      try {
        bootId = readText("/proc/sys/kernel/random/boot_id").trim() || null;
      } catch {
        bootId = null;
      }
    }
    return bootId;
  };

  const tokenOf = (startTime: string): string => `${getBootId() ?? "noboot"}:${startTime}`;

  const probe = (pid: number): ProcessProbe => {
    if (!isValidPid(pid)) return { state: "unknown", why: `invalid pid ${String(pid)}` };
    let text: string;
    try {
      text = readText(`/proc/${pid}/stat`);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ESRCH") {
        return procMounted(readText) ? { state: "dead", why: "gone" } : probeByKill(pid, kill);
      }
      return { state: "unknown", why: `cannot read /proc/${pid}/stat (${code ?? String(error)})` };
    }
    const stat = parseProcStat(text);
    if (!stat) return { state: "unknown", why: `unexpected /proc/${pid}/stat format` };
    if (stat.state === "Z" || stat.state === "X") return { state: "dead", why: "zombie" };
    return { state: "alive", startToken: tokenOf(stat.startTime) };
  };

  return {
    probe,
    selfToken: () => {
      const self = probe(deps.selfPid ?? process.pid);
      return self.state === "alive" ? self.startToken : null;
    },
  };
}

function procMounted(readText: (path: string) => string): boolean {
  try {
    readText("/proc/self/stat");
    return true;
  } catch {
    return false;
  }
}

function probeByKill(pid: number, kill: (pid: number, signal: 0) => void): ProcessProbe {
  try {
    kill(pid, 0);
    return { state: "alive", startToken: null };
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ESRCH") return { state: "dead", why: "gone" };
    // EPERM: it exists but is not ours to signal.
    if (code === "EPERM") return { state: "alive", startToken: null };
    return { state: "unknown", why: `kill(${pid}, 0) failed (${code ?? String(error)})` };
  }
}
