import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { appendFile, chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll } from "vitest";

/** What a test says when no PostgreSQL server is installed: CI installs one, a developer may not have. */
export const POSTGRES_MISSING =
  "PostgreSQL 15 or newer is missing (no /usr/lib/postgresql/<version>/bin/postgres): install Debian's server with `apt-get install -y postgresql`, as .ci/run does";

const DEBIAN_ROOT = "/usr/lib/postgresql";

/** The bin folder of the newest Debian PostgreSQL (15 or newer) on this machine; throws POSTGRES_MISSING when there is none. */
export function postgresBinDir(root = DEBIAN_ROOT): string {
  let versions: number[] = [];
  try {
    versions = readdirSync(root)
      .map(Number)
      .filter((v) => Number.isInteger(v) && v >= 15 && existsSync(join(root, String(v), "bin", "postgres")));
  } catch {
    // no folder at all: missing
  }
  const newest = versions.sort((a, b) => b - a)[0];
  if (newest === undefined) throw new Error(POSTGRES_MISSING);
  return join(root, String(newest), "bin");
}

export interface PostgresCluster {
  readonly host: "127.0.0.1";
  readonly port: number;
  readonly user: string;
  /** the superuser's password; tests check that it never appears in a message */
  readonly password: string;
  /** the data folder, the unix socket and the server log all live under this temp folder */
  readonly dir: string;
  /** postgres://user:password@127.0.0.1:port/database */
  url(database?: string): string;
  /** a new, empty database on this cluster; answers its URL */
  createDatabase(name: string): Promise<string>;
  /** stop the server now (immediate shutdown: as if the machine lost it); the data stays */
  stop(): Promise<void>;
  /** start the same cluster again on the same port */
  start(): Promise<void>;
  /** stop the server and remove every file */
  close(): Promise<void>;
}

/** A free loopback port, from the OS (port 0). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

interface RunAs {
  uid?: number;
  gid?: number;
}

/** postgres refuses to run as root: as root, the server runs as Debian's `postgres` user. */
async function serverUser(): Promise<RunAs> {
  if (process.getuid?.() !== 0) return {};
  const passwd = await readFile("/etc/passwd", "utf8");
  const entry = passwd.split("\n").find((line) => line.startsWith("postgres:"));
  const [, , uid, gid] = entry?.split(":") ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error(`running as root and there is no \`postgres\` user to run the server as: ${POSTGRES_MISSING}`);
  }
  return { uid: Number(uid), gid: Number(gid) };
}

/** The server's own clock and libraries: never libfaketime's (test:midnight moves only gpu-canary's clock). */
function serverEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8", TZ: "UTC" };
}

/**
 * A throwaway PostgreSQL cluster on a free loopback port: `initdb` into a fresh temp folder
 * (owned by the `postgres` user when running as root), the unix socket in that folder too,
 * password (scram) logins over TCP. Never touches a system data directory. Call `close()`
 * in afterAll.
 */
export async function startPostgres(options: { binDir?: string; user?: string } = {}): Promise<PostgresCluster> {
  const binDir = options.binDir ?? postgresBinDir();
  const user = options.user ?? "canary";
  const password = randomBytes(12).toString("hex");
  const runAs = await serverUser();
  const dir = await mkdtemp(join(tmpdir(), "gpu-canary-pg-"));
  const data = join(dir, "data");
  const log = join(dir, "server.log");
  const own = async (path: string) => {
    if (runAs.uid !== undefined && runAs.gid !== undefined) await chown(path, runAs.uid, runAs.gid);
  };
  const run = (tool: string, args: string[]) =>
    execa(join(binDir, tool), args, { ...runAs, cwd: dir, env: serverEnv(), extendEnv: false, stdin: "ignore", timeout: 60_000 });

  let port = 0;
  const start = async () => {
    try {
      await run("pg_ctl", ["start", "--pgdata", data, "--log", log, "--wait", "--timeout", "30", "--silent"]);
    } catch (error) {
      const tail = await readFile(log, "utf8").catch(() => "");
      throw new Error(`PostgreSQL did not start on 127.0.0.1:${port}: ${tail.slice(-2000) || String(error)}`, { cause: error });
    }
  };
  const stop = async () => {
    await run("pg_ctl", ["stop", "--pgdata", data, "--mode", "immediate", "--wait", "--silent"]);
  };

  try {
    await chmod(dir, 0o700);
    await own(dir);
    const pwfile = join(dir, "pwfile");
    await writeFile(pwfile, `${password}\n`, { mode: 0o600 });
    await own(pwfile);
    await mkdir(data, { mode: 0o700 });
    await own(data);
    await run("initdb", [
      "--pgdata",
      data,
      "--username",
      user,
      "--pwfile",
      pwfile,
      "--auth-local",
      "trust",
      "--auth-host",
      "scram-sha-256",
      "--encoding",
      "UTF8",
      "--no-locale",
      "--no-sync",
    ]);
    await rm(pwfile);
    port = await freePort();
    // A test server: durability off for speed (the data dies with the test anyway).
    await appendFile(
      join(data, "postgresql.conf"),
      [
        `port = ${port}`,
        "listen_addresses = '127.0.0.1'",
        `unix_socket_directories = '${dir}'`,
        "fsync = off",
        "full_page_writes = off",
        "max_connections = 100",
        "",
      ].join("\n"),
    );
    await start();
  } catch (error) {
    await stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  // A test process that dies before its afterAll still takes its server and files with it.
  const onExit = () => {
    try {
      const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0]);
      if (Number.isInteger(pid) && pid > 0) process.kill(pid, "SIGQUIT");
    } catch {
      // not running
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", onExit);

  const url = (database = "postgres") => `postgres://${user}:${password}@127.0.0.1:${port}/${database}`;
  let closed = false;
  return {
    host: "127.0.0.1",
    port,
    user,
    password,
    dir,
    url,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`createDatabase: not a plain database name: ${name}`);
      await run("createdb", ["--host", dir, "--port", String(port), "--username", user, name]);
      return url(name);
    },
    stop,
    start,
    async close() {
      if (closed) return;
      closed = true;
      process.removeListener("exit", onExit);
      try {
        await stop();
      } catch {
        // already stopped (a test's stop()): nothing runs
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export interface PostgresForFile {
  /** the file's cluster, once its beforeAll has started it */
  readonly cluster: PostgresCluster;
  /** a new, empty database on it for one test (named `<prefix>_<pid>_<n>`); answers its URL */
  database(prefix?: string): Promise<string>;
}

let databases = 0;

/**
 * A throwaway cluster for a test file: started in its beforeAll, stopped and removed in its
 * afterAll; each test takes a database of its own, so tests of a file never see each other's rows.
 */
export function postgresForFile(): PostgresForFile {
  let cluster: PostgresCluster | undefined;
  beforeAll(async () => {
    cluster = await startPostgres();
  });
  afterAll(async () => {
    await cluster?.close();
  });
  const started = (): PostgresCluster => {
    if (!cluster) throw new Error("postgresForFile(): the cluster starts in beforeAll; use it inside a test or a hook");
    return cluster;
  };
  return {
    get cluster() {
      return started();
    },
    database(prefix = "test") {
      databases += 1;
      return started().createDatabase(`${prefix}_${process.pid}_${databases}`);
    },
  };
}
