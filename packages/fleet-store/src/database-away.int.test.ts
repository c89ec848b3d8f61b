import { createDowntimeBudget } from "@gpu-canary/policy";
import { postgresForFile, until } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createFleetPool } from "./connection.ts";
import { FleetDbLoginError, FleetDbUnreachableError } from "./errors.ts";
import { createFleetSlots } from "./fleet-slots.ts";
import { checkSchema } from "./migrate.ts";
import { pgBudgetStore } from "./stores.ts";
import { freshDatabase } from "./test-fixtures/fleet-db.ts";

// This file stops and starts its own cluster: no other file's tests share it.
const postgres = postgresForFile();

const DATE = "20261128";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function expectUnreachable(error: unknown, database: string): void {
  expect(error).toBeInstanceOf(FleetDbUnreachableError);
  const e = error as FleetDbUnreachableError;
  expect(e).toMatchObject({ code: "FLEET_DB_UNREACHABLE", kind: "refused", exitCode: 3, details: { database } });
  expect(e.message).toContain(`the fleet database ${database} cannot be reached`);
  expect(JSON.stringify({ ...e.toJSON(), details: e.details })).not.toContain(postgres.cluster.password);
}

describe("the fleet database away", () => {
  it("refuses new slots and charges while the server is stopped, naming it without the password, and loses nothing when it returns", async () => {
    const db = await freshDatabase(postgres.cluster);
    const database = `127.0.0.1:${postgres.cluster.port}/${db.url.split("/").at(-1)}`;
    const a = createFleetSlots({ pool: db.pool(), hostId: "gpu-a", maxConcurrent: 1 });
    const b = createFleetSlots({ pool: db.pool(), hostId: "gpu-b", maxConcurrent: 1 });
    const budget = createDowntimeBudget({ storeFor: pgBudgetStore(db.pool(), "gpu-a"), maxSeconds: 120 });
    const held = await a.acquire("run-1");
    if (!held.ok) throw new Error("gpu-a should have the slot");
    await budget.charge(DATE, "run-0", 4.5);
    const renewalErrors: unknown[] = [];
    let lost = 0;
    const heartbeat = a.keepRenewing(held.token, { everyMs: 50, onLost: () => (lost += 1), onError: (e) => renewalErrors.push(e) });

    await postgres.cluster.stop();
    try {
      await until(() => renewalErrors.length >= 2, "the heartbeat to fail while the database is away");
      expectUnreachable(await b.acquire("run-2").catch((e: unknown) => e), database);
      expectUnreachable(await a.renew(held.token).catch((e: unknown) => e), database);
      expectUnreachable(await a.assertHeld(held.token).catch((e: unknown) => e), database);
      expectUnreachable(await budget.charge(DATE, "run-1", 3).catch((e: unknown) => e), database);
      expectUnreachable(await budget.status(DATE).catch((e: unknown) => e), database);
      expectUnreachable(await checkSchema(db.pool()).catch((e: unknown) => e), database);
    } finally {
      await postgres.cluster.start();
    }

    // the same pools work again; the slot and the charge are still there, the heartbeat goes on
    const errorsBefore = renewalErrors.length;
    await a.renew(held.token);
    await sleep(200);
    await heartbeat.stop();
    expect(lost).toBe(0);
    expect(renewalErrors.length - errorsBefore).toBeLessThanOrEqual(1);
    expectUnreachable(renewalErrors[0], database);
    expect(await a.list()).toMatchObject([{ hostId: "gpu-a", runId: "run-1", token: held.token }]);
    expect(await b.acquire("run-2")).toMatchObject({ ok: false, holders: [{ hostId: "gpu-a" }] });
    await a.assertHeld(held.token);
    expect(await a.release({ token: held.token })).toBe(true);
    expect((await budget.charge(DATE, "run-1", 3)).status.secondsUsed).toBe(7.5);
  });

  it("names the database when nothing listens on its port", async () => {
    const url = postgres.cluster.url("fleet").replace(`:${postgres.cluster.port}/`, ":1/");
    const pool = createFleetPool(url, { connectTimeoutMs: 2_000 });
    try {
      const slots = createFleetSlots({ pool, hostId: "gpu-a", maxConcurrent: 1 });
      const error = await slots.acquire("run-1").catch((e: unknown) => e);
      expectUnreachable(error, "127.0.0.1:1/fleet");
      expect((error as Error).message).toMatch(/ECONNREFUSED/);
    } finally {
      await pool.end();
    }
  });

  it("says that a wrong password is refused without echoing it", async () => {
    const url = postgres.cluster.url("postgres").replace(postgres.cluster.password, "not-the-password");
    const pool = createFleetPool(url, { connectTimeoutMs: 2_000 });
    try {
      const error = await checkSchema(pool).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(FleetDbLoginError);
      expect(error).toMatchObject({ code: "FLEET_DB_LOGIN_FAILED", kind: "fault", exitCode: 4 });
      expect((error as Error).message).toBe(
        `the fleet database 127.0.0.1:${postgres.cluster.port}/postgres refused this host: password authentication failed for user "canary"`,
      );
      expect((error as Error).message).not.toContain("not-the-password");
    } finally {
      await pool.end();
    }
  });
});
