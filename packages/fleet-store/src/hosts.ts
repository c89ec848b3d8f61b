import type pg from "pg";
import * as z from "zod";
import { query } from "./connection.ts";

export interface FleetHost {
  hostId: string;
  lastSeen: Date;
  /** what the host said of itself last (version, fingerprint…) */
  info: Record<string, unknown>;
}

const hostRow = z.object({ host_id: z.string(), last_seen: z.date(), info: z.record(z.string(), z.unknown()) });

/**
 * The host is alive: its last-seen time becomes now. `info`, when given, is merged into what it said
 * before, key by key: each part of gpu-canary says its own part (fingerprint, applied settings…)
 * without erasing the others'.
 */
export async function touchHost(pool: pg.Pool, hostId: string, info?: Record<string, unknown>): Promise<void> {
  await query(
    pool,
    `INSERT INTO hosts (host_id, info) VALUES ($1, coalesce($2::jsonb, '{}'::jsonb))
     ON CONFLICT (host_id) DO UPDATE SET last_seen = now(), info = hosts.info || coalesce($2::jsonb, '{}'::jsonb)`,
    [hostId, info === undefined ? null : JSON.stringify(info)],
  );
}

/** Every host that ever talked to the database, by name. */
export async function listHosts(pool: pg.Pool): Promise<FleetHost[]> {
  const result = await query(pool, "SELECT host_id, last_seen, info FROM hosts ORDER BY host_id");
  return result.rows.map((row) => {
    const r = hostRow.parse(row);
    return { hostId: r.host_id, lastSeen: r.last_seen, info: r.info };
  });
}
