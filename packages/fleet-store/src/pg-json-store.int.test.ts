import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type BudgetStoreFor,
  BudgetUnreadableError,
  type JsonStore,
  createDowntimeBudget,
  createRateLimiter,
  fileBudgetStore,
} from "@gpu-canary/policy";
import { postgresForFile, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { createPgJsonStore } from "./pg-json-store.ts";
import { budgetKey, mirroredBudgetStore, pgBudgetStore, pgRateLimitStore } from "./stores.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

const postgres = postgresForFile();

const DATE = "20261128";
const counter = z.object({ n: z.number().int() });

/** Every decision takes 15 ms: concurrent updates overlap for sure, so a store without a lock loses some. */
function slowed<T>(store: JsonStore<T>): JsonStore<T> {
  return {
    ...store,
    update: (decide) =>
      store.update(async (current) => {
        await new Promise((resolve) => setTimeout(resolve, 15));
        return decide(current);
      }),
  };
}
const slowBudget =
  (storeFor: BudgetStoreFor): BudgetStoreFor =>
  (date) =>
    slowed(storeFor(date));

describe("createPgJsonStore", () => {
  it("tells a missing document from a written one, and writes only what decide says", async () => {
    const db = await freshDatabase(postgres.cluster);
    const store = createPgJsonStore(db.pool(), { hostId: "gpu-a", key: "counter", schema: counter });
    expect(store.location).toBe(`127.0.0.1:${postgres.cluster.port}/${db.url.split("/").at(-1)} documents[gpu-a/counter]`);
    expect(await store.read()).toEqual({ status: "missing" });
    expect(await store.update((current) => ({ answer: current.status }))).toBe("missing");
    expect(await store.read()).toEqual({ status: "missing" });
    expect(await store.update(() => ({ write: { n: 1 }, answer: "wrote" }))).toBe("wrote");
    expect(await store.read()).toMatchObject({ status: "ok", value: { n: 1 } });
    const other = createPgJsonStore(db.pool(), { hostId: "gpu-b", key: "counter", schema: counter });
    expect(await other.read()).toEqual({ status: "missing" });
  });

  it("reports a stored document that fails the schema as unreadable with its reason, and never resets it", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pool = db.pool();
    await pool.query("INSERT INTO documents (host_id, key, doc) VALUES ('gpu-a', $1, $2::jsonb)", [
      budgetKey(DATE),
      '{"seconds_used": -5}',
    ]);
    const storeFor = pgBudgetStore(pool, "gpu-a");
    const read = await storeFor(DATE).read();
    expect(read).toMatchObject({ status: "unreadable", text: '{"seconds_used": -5}' });
    if (read.status === "unreadable") {
      expect(read.error.reason).toBe("has an invalid seconds_used: must not be negative");
      expect(read.error.hint).toBe(`gpu-canary budget reset --yes --date ${DATE}`);
    }
    const budget = createDowntimeBudget({ storeFor, maxSeconds: 120 });
    await expect(budget.charge(DATE, "run-1", 3)).rejects.toBeInstanceOf(BudgetUnreadableError);
    const row = await pool.query<{ doc: unknown }>("SELECT doc FROM documents WHERE host_id = 'gpu-a'");
    expect(row.rows[0]?.doc).toEqual({ seconds_used: -5 });
  });

  it("refuses to write a document that would not read back", async () => {
    const db = await freshDatabase(postgres.cluster);
    const store = createPgJsonStore(db.pool(), { hostId: "gpu-a", key: "counter", schema: counter });
    await expect(store.update(() => ({ write: { n: 0.5 }, answer: null }))).rejects.toThrow();
    expect(await store.read()).toEqual({ status: "missing" });
  });
});

describe("downtime budget on the fleet database", () => {
  it("loses no charge when one host's 12 charges come from three processes at once", async () => {
    const db = await freshDatabase(postgres.cluster);
    const pools = [db.pool(), db.pool(), db.pool()];
    const budgets = pools.map((pool) => createDowntimeBudget({ storeFor: slowBudget(pgBudgetStore(pool, "gpu-a")), maxSeconds: 600 }));
    const seconds = Array.from({ length: 12 }, (_, i) => 1.25 + i);
    await Promise.all(seconds.map((s, i) => budgets[i % 3]!.charge(DATE, `run-${i}`, s)));
    const status = await budgets[0]!.status(DATE);
    expect(status.charges).toHaveLength(12);
    expect(status.secondsUsed).toBeCloseTo(
      seconds.reduce((a, b) => a + b, 0),
      6,
    );
  });

  it("keeps each host's budget apart when three hosts charge 4 times each at once", async () => {
    const db = await freshDatabase(postgres.cluster);
    const hosts = ["gpu-a", "gpu-b", "gpu-c"];
    const budgets = hosts.map((host) => createDowntimeBudget({ storeFor: slowBudget(pgBudgetStore(db.pool(), host)), maxSeconds: 600 }));
    await Promise.all(budgets.flatMap((budget, h) => [1, 2, 3, 4].map((k) => budget.charge(DATE, `run-${h}-${k}`, k * (h + 1)))));
    const used = await Promise.all(budgets.map(async (b) => (await b.status(DATE)).secondsUsed));
    expect(used).toEqual([10, 20, 30]);
  });

  it("charges a run once even when the charge is repeated from another process", async () => {
    const db = await freshDatabase(postgres.cluster);
    const [a, b] = [db.pool(), db.pool()].map((pool) =>
      createDowntimeBudget({ storeFor: slowBudget(pgBudgetStore(pool, "gpu-a")), maxSeconds: 60 }),
    );
    const results = await Promise.all([a!.charge(DATE, "run-1", 7), b!.charge(DATE, "run-1", 7)]);
    expect(results.map((r) => r.charged).sort()).toEqual([false, true]);
    expect((await a!.status(DATE)).secondsUsed).toBe(7);
  });

  it("keeps the local budget file equal to the database's document after every charge", async () => {
    const db = await freshDatabase(postgres.cluster);
    const dir = await testdir();
    const pathFor = (date: string) => join(dir, `gpu_budget_${date}.json`);
    // the host's file is stale (from before the fleet, or a missed write): the next update puts it right
    await writeFile(pathFor(DATE), '{"seconds_used": 99}\n');
    const pool = db.pool();
    const storeFor = mirroredBudgetStore(pgBudgetStore(pool, "gpu-a"), fileBudgetStore(pathFor));
    const budget = createDowntimeBudget({ storeFor, maxSeconds: 120 });
    await Promise.all([1, 2, 3].map((k) => budget.charge(DATE, `run-${k}`, k)));
    const local = JSON.parse(await readFile(pathFor(DATE), "utf8")) as { seconds_used: number; charges: unknown[] };
    const row = await pool.query<{ doc: unknown }>("SELECT doc FROM documents WHERE host_id = 'gpu-a' AND key = $1", [budgetKey(DATE)]);
    expect(local.seconds_used).toBe(6);
    expect(local).toEqual(row.rows[0]?.doc);
    expect((await budget.status(DATE)).secondsUsed).toBe(6);
    // a charge that changes nothing (the same run again) still leaves the file true
    await writeFile(pathFor(DATE), '{"seconds_used": 0}\n');
    expect((await budget.charge(DATE, "run-1", 1)).charged).toBe(false);
    expect(JSON.parse(await readFile(pathFor(DATE), "utf8"))).toEqual(row.rows[0]?.doc);
  });
});

describe("rate limits on the fleet database", () => {
  it("admits at most maxRuns of concurrent runs from three processes of one host", async () => {
    const db = await freshDatabase(postgres.cluster);
    const rule = { maxRuns: 2, windowHours: 24, cooldownHours: 0 };
    const limiters = [db.pool(), db.pool(), db.pool()].map((pool) =>
      createRateLimiter({ store: slowed(pgRateLimitStore(pool, "gpu-a")), rule }),
    );
    const decisions = await Promise.all(Array.from({ length: 6 }, (_, i) => limiters[i % 3]!.admit("vllm", `run-${i}`)));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(2);
    const other = createRateLimiter({ store: pgRateLimitStore(db.pool(), "gpu-b"), rule });
    expect((await other.check("vllm")).allowed).toBe(true);
  });
});
