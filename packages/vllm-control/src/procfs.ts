import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/** What /proc says about processes and listening sockets (Linux). Injected paths keep it testable. */
export interface ProcInfo {
  pid: number;
  ppid: number;
  /** process group */
  pgrp: number;
  /** R, S, D, Z, … */
  state: string;
  comm: string;
  cmdline: string;
}

export function readProc(pid: number, root = "/proc"): ProcInfo | null {
  try {
    const stat = readFileSync(`${root}/${pid}/stat`, "utf8");
    const open = stat.indexOf("(");
    const close = stat.lastIndexOf(")");
    const fields = stat.slice(close + 2).split(" ");
    const cmdline = readFileSync(`${root}/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    return { pid, ppid: Number(fields[1]), pgrp: Number(fields[2]), state: fields[0] ?? "?", comm: stat.slice(open + 1, close), cmdline };
  } catch {
    return null;
  }
}

/**
 * The environment a process started with (/proc/PID/environ); null when it is gone or not ours
 * to read (the kernel lets only its own user, or root, read it).
 */
export function readEnviron(pid: number, root = "/proc"): Record<string, string> | null {
  let text: string;
  try {
    text = readFileSync(`${root}/${pid}/environ`, "utf8");
  } catch {
    return null;
  }
  const env: Record<string, string> = {};
  for (const entry of text.split("\0")) {
    const at = entry.indexOf("=");
    if (at > 0) env[entry.slice(0, at)] = entry.slice(at + 1);
  }
  return env;
}

export function listPids(root = "/proc"): number[] {
  return readdirSync(root)
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/** `pid` and every process below it. */
export function descendants(pid: number, root = "/proc"): ProcInfo[] {
  const all = listPids(root)
    .map((p) => readProc(p, root))
    .filter((p): p is ProcInfo => p !== null);
  const result: ProcInfo[] = [];
  const queue = [pid];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const current = queue.shift() as number;
    if (seen.has(current)) continue;
    seen.add(current);
    const info = all.find((p) => p.pid === current);
    if (info) result.push(info);
    for (const child of all.filter((p) => p.ppid === current)) queue.push(child.pid);
  }
  return result;
}

/** Socket inodes listening on a TCP port, any address, from /proc/net/tcp and tcp6. */
export function listeningInodes(port: number, root = "/proc"): Set<string> {
  const inodes = new Set<string>();
  for (const file of ["net/tcp", "net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(`${root}/${file}`, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1];
      const state = fields[3];
      const inode = fields[9];
      if (!local || state !== "0A" || !inode) continue;
      if (Number.parseInt(local.split(":")[1] ?? "", 16) === port) inodes.add(inode);
    }
  }
  return inodes;
}

/** The processes holding a listening socket on `port` (needs permission to read their fds: root or the same user). */
export function listenersOf(port: number, root = "/proc"): ProcInfo[] {
  const inodes = listeningInodes(port, root);
  if (inodes.size === 0) return [];
  const holders: ProcInfo[] = [];
  for (const pid of listPids(root)) {
    let fds: string[];
    try {
      fds = readdirSync(`${root}/${pid}/fd`);
    } catch {
      continue;
    }
    const holds = fds.some((fd) => {
      try {
        const target = readlinkSync(`${root}/${pid}/fd/${fd}`);
        const match = /^socket:\[(\d+)\]$/.exec(target);
        return match?.[1] !== undefined && inodes.has(match[1]);
      } catch {
        return false;
      }
    });
    if (holds) {
      const info = readProc(pid, root);
      if (info) holders.push(info);
    }
  }
  return holders;
}

/** Alive means present and not a zombie: kill(pid, 0) still answers for a zombie. */
export function isAlive(pid: number, root = "/proc"): boolean {
  const info = readProc(pid, root);
  return info !== null && info.state !== "Z" && info.state !== "X";
}

/** Live (non-zombie) members of a process group. */
export function groupMembers(pgrp: number, root = "/proc"): ProcInfo[] {
  return listPids(root)
    .map((p) => readProc(p, root))
    .filter((p): p is ProcInfo => p !== null && p.pgrp === pgrp && p.state !== "Z" && p.state !== "X");
}

/**
 * Stop a process group: SIGTERM, up to `graceMs` for it to go, then SIGKILL and up to 5 s more.
 * Zombies waiting for PID 1 to reap them do not count as members.
 */
export async function stopProcessGroup(pgrp: number, graceMs: number): Promise<{ killed: boolean; gone: boolean }> {
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pgrp, s);
    } catch {
      // the group is already gone
    }
  };
  const waitGone = async (ms: number) => {
    const deadline = Date.now() + ms;
    while (groupMembers(pgrp).length > 0 && Date.now() < deadline) await sleep(50);
  };
  signal("SIGTERM");
  await waitGone(graceMs);
  let killed = false;
  if (groupMembers(pgrp).length > 0) {
    killed = true;
    signal("SIGKILL");
    await waitGone(5000);
  }
  return { killed, gone: groupMembers(pgrp).length === 0 };
}
