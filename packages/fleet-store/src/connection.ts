import { errnoCode, messageOf } from "@gpu-canary/errors";
import pg from "pg";
import { FleetDbLoginError, FleetDbUnreachableError } from "./errors.ts";

export interface FleetPoolOptions {
  /** connections this host keeps open; default 4 */
  max?: number;
  /** how long to wait for a connection before the database counts as unreachable; default 5 s */
  connectTimeoutMs?: number;
  /** what the database shows in pg_stat_activity; default "gpu-canary" */
  applicationName?: string;
}

/**
 * A pool for `KLR_STATE_URL`. Short connect timeout (an unreachable database is an answer, not a
 * hang), and the server ends a session left idle inside a transaction after 60 s, so a host that
 * dies mid-transaction never keeps the slot table locked. Idle connections that the server drops
 * are only removed from the pool: the next query reports the database as unreachable.
 */
export function createFleetPool(url: string, options: FleetPoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 4,
    connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
    idle_in_transaction_session_timeout: 60_000,
    keepAlive: true,
    application_name: options.applicationName ?? "gpu-canary",
  });
  pool.on("error", () => {
    // an idle client lost its connection (server stopped, network): pg-pool drops it; the next use says so
  });
  return pool;
}

interface Target {
  label: string;
  secret: string | undefined;
}

function targetOf(pool: pg.Pool): Target {
  const options = pool.options as pg.PoolConfig;
  let host = options.host;
  let port = options.port === undefined ? undefined : String(options.port);
  let database = options.database;
  let secret = typeof options.password === "string" ? options.password : undefined;
  if (options.connectionString) {
    try {
      const url = new URL(options.connectionString);
      host = host ?? (url.hostname || undefined);
      port = port ?? (url.port || undefined);
      database = database ?? (decodeURIComponent(url.pathname.replace(/^\//, "")) || undefined);
      secret = secret ?? (url.password ? decodeURIComponent(url.password) : undefined);
    } catch {
      // not a URL: pg will say so when it connects
    }
  }
  return { label: `${host ?? "localhost"}:${port ?? "5432"}/${database ?? "postgres"}`, secret };
}

/** host:port/database of a pool, never its user or password: what messages name. */
export function describeDatabase(pool: pg.Pool): string {
  return targetOf(pool).label;
}

// Connection exceptions (08), admin shutdown / crash / cannot connect now (57P01-57P03).
const UNREACHABLE_SQLSTATES = /^(08...|57P0[123])$/;
const UNREACHABLE_ERRNOS = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
]);
const UNREACHABLE_MESSAGES =
  /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection refused/i;

/** The error means the database is away (not a bug or a constraint): the caller fails closed. */
export function isUnreachable(error: unknown): boolean {
  const code = errnoCode(error);
  if (code !== undefined && (UNREACHABLE_SQLSTATES.test(code) || UNREACHABLE_ERRNOS.has(code))) return true;
  if (error instanceof AggregateError) return error.errors.some(isUnreachable);
  return UNREACHABLE_MESSAGES.test(messageOf(error));
}

/** A message fit to show: the pool's password removed wherever pg or the OS echoed it. */
function scrub(text: string, secret: string | undefined): string {
  return secret ? text.split(secret).join("***") : text;
}

// Invalid authorization (28), no such database (3D000).
const LOGIN_SQLSTATES = /^(28...|3D000)$/;

/**
 * What the operator sees for an error of the database: unreachable ones become
 * FLEET_DB_UNREACHABLE, a refused login FLEET_DB_LOGIN_FAILED; others (bugs, constraints) pass.
 */
export function translateError(pool: pg.Pool, error: unknown): unknown {
  const login = LOGIN_SQLSTATES.test(errnoCode(error) ?? "");
  if (!login && !isUnreachable(error)) return error;
  const { label, secret } = targetOf(pool);
  const reason = scrub(
    (error instanceof AggregateError ? error.errors.map(messageOf).join("; ") : messageOf(error)) || "the connection failed",
    secret,
  );
  return login ? new FleetDbLoginError(label, reason, error) : new FleetDbUnreachableError(label, reason, error);
}

const RETRYABLE = new Set(["40001", "40P01"]);

/**
 * Run `work` in one transaction on one connection, retrying a few times on serialization
 * failures and deadlocks; an unreachable database throws FleetDbUnreachableError.
 */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (error) {
      throw translateError(pool, error);
    }
    let broken: unknown;
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      await client.query("ROLLBACK").catch((rollbackError: unknown) => {
        broken = rollbackError;
      });
      const code = errnoCode(error);
      if (code !== undefined && RETRYABLE.has(code) && attempt < attempts) {
        await new Promise((resolve) => setTimeout(resolve, 5 * attempt + Math.random() * 20));
        continue;
      }
      throw translateError(pool, error);
    } finally {
      // a connection that failed its rollback is not given back to the pool for reuse
      client.release(broken instanceof Error ? broken : undefined);
    }
  }
}

/** One query outside a transaction, with the same translation of an unreachable database. */
export async function query<R extends pg.QueryResultRow>(pool: pg.Pool, text: string, values: unknown[] = []): Promise<pg.QueryResult<R>> {
  try {
    return await pool.query<R>(text, values);
  } catch (error) {
    throw translateError(pool, error);
  }
}
