import { readFileSync } from "node:fs";

const LOWEST = 20_000;

/** Where the kernel starts handing out ports for outgoing connections. */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > LOWEST + 1000 ? first : 32_768;
  } catch {
    return 32_768;
  }
}

/** The simulated site uses the port after its production's too (the canary's, the daemon's). */
const NEIGHBOURS = 10;

/**
 * A port for a simulated server, chosen at random below the kernel's ephemeral range: a port inside it may
 * already be the local end of some outgoing connection (or of a health check connecting to itself), and then
 * the server cannot bind it and never answers — or a gate finds the canary's port taken.
 */
export function freePort(): number {
  return LOWEST + Math.floor(Math.random() * (ephemeralStart() - LOWEST - NEIGHBOURS));
}
