import { createServer } from "node:net";
import { type ProcInfo, listeningInodes, listenersOf } from "./procfs.ts";

export type PortState = { free: true } | { free: false; holders: ProcInfo[]; description: string };

/**
 * Whether a canary could bind `port`, and if not, who holds it (so a run never stops
 * production for a canary that cannot bind).
 */
export async function portState(port: number, host = "127.0.0.1"): Promise<PortState> {
  const listening = listeningInodes(port).size > 0;
  const bindable = listening ? false : await canBind(port, host);
  if (bindable) return { free: true };
  const holders = listenersOf(port);
  const description =
    holders.length > 0
      ? holders.map((h) => `PID ${h.pid} (${h.cmdline || h.comm})`).join(", ")
      : "a process this user cannot see (run as root, or check `ss -ltnp`)";
  return { free: false, holders, description: `port ${port} is in use by ${description}` };
}

function canBind(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
