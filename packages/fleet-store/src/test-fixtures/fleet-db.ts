import type { PostgresCluster } from "@gpu-canary/testing";
import type pg from "pg";
import { onTestFinished } from "vitest";
import { createFleetPool } from "../connection.ts";
import { migrate } from "../migrate.ts";

let counter = 0;

export interface FreshDatabase {
  url: string;
  /** a new pool on it (a "host"), ended when the test finishes */
  pool(options?: { max?: number }): pg.Pool;
}

/** A new empty database on the file's cluster, migrated unless `empty`; its pools end with the test. */
export async function freshDatabase(cluster: PostgresCluster, options: { empty?: boolean } = {}): Promise<FreshDatabase> {
  counter += 1;
  const url = await cluster.createDatabase(`fleet_${process.pid}_${counter}`);
  const pools: pg.Pool[] = [];
  onTestFinished(async () => {
    await Promise.all(pools.map((p) => p.end()));
  });
  const pool = (o: { max?: number } = {}) => {
    const p = createFleetPool(url, { max: o.max ?? 4, connectTimeoutMs: 2_000 });
    pools.push(p);
    return p;
  };
  if (!options.empty) await migrate(pool());
  return { url, pool };
}
