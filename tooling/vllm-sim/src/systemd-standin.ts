// systemctl, systemd-run and journalctl stand-ins that really act, for hosts where systemd is
// not PID 1 (this machine, CI): units are real processes started in a session of their own,
// their output appended to a log the journalctl stand-in follows. State lives in SIM_SYSTEMD_DIR;
// the user's own manager (`--user`) keeps its units apart, in SIM_SYSTEMD_DIR/user.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createProcessInspector } from "@gpu-canary/state-file";
import * as z from "zod";

const unitSchema = z.object({
  exec: z.array(z.string()).min(1),
  env: z.record(z.string(), z.string()).default({}),
  /** seconds before a started unit is stopped (systemd's RuntimeMaxSec) */
  runtime_max_sec: z.number().positive().optional(),
  transient: z.boolean().default(false),
});
export type UnitDefinition = z.input<typeof unitSchema>;

const stateSchema = z.object({ pid: z.number().int(), started_at: z.string() });

const inspector = createProcessInspector();

export function systemdDir(): string {
  const dir = process.env.SIM_SYSTEMD_DIR;
  if (!dir) {
    process.stderr.write("System has not been booted with systemd as init system (PID 1). Can't operate.\n");
    process.exit(1);
  }
  return dir;
}

/**
 * `--user`: the user's manager, reached as systemd reaches it, through $XDG_RUNTIME_DIR (a service
 * started by the system manager has none unless it is given one).
 */
function managerDir(argv: string[]): string {
  const dir = systemdDir();
  if (!argv.includes("--user")) return dir;
  if (!process.env.XDG_RUNTIME_DIR) {
    process.stderr.write("Failed to connect to bus: $DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR not defined\n");
    process.exit(1);
  }
  const user = join(dir, "user");
  mkdirSync(user, { recursive: true });
  return user;
}

const paths = (dir: string, unit: string) => ({
  definition: join(dir, `${unit}.json`),
  state: join(dir, `${unit}.state.json`),
  log: join(dir, `${unit}.log`),
});

/** Define a unit for the systemctl stand-in (tests and the demo write these). */
export function defineUnit(dir: string, unit: string, definition: UnitDefinition): void {
  writeFileSync(paths(dir, unit).definition, JSON.stringify(unitSchema.parse(definition)));
}

function mainPid(dir: string, unit: string): number | null {
  const file = paths(dir, unit).state;
  if (!existsSync(file)) return null;
  const state = stateSchema.parse(JSON.parse(readFileSync(file, "utf8")));
  return inspector.probe(state.pid).state === "alive" ? state.pid : null;
}

function startUnit(dir: string, unit: string): number {
  const p = paths(dir, unit);
  if (!existsSync(p.definition)) {
    process.stderr.write(`Failed to start ${unit}: Unit ${unit} not found.\n`);
    return 5;
  }
  if (mainPid(dir, unit) !== null) return 0;
  const definition = unitSchema.parse(JSON.parse(readFileSync(p.definition, "utf8")));
  const exec = definition.runtime_max_sec
    ? ["timeout", "--signal=TERM", "--kill-after=5", String(definition.runtime_max_sec), ...definition.exec]
    : definition.exec;
  const log = openSync(p.log, "a");
  const [file, ...args] = exec as [string, ...string[]];
  // A session of its own: like a unit, it is not part of the caller's process tree's fate.
  const child = spawn(file, args, { detached: true, stdio: ["ignore", log, log], env: { ...process.env, ...definition.env } });
  closeSync(log);
  child.unref();
  writeFileSync(p.state, JSON.stringify({ pid: child.pid, started_at: new Date().toISOString() }));
  return 0;
}

async function stopUnit(dir: string, unit: string): Promise<number> {
  const pid = mainPid(dir, unit);
  if (pid === null) return 0;
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pid, s);
    } catch {
      try {
        process.kill(pid, s);
      } catch {
        // gone
      }
    }
  };
  signal("SIGTERM");
  // systemd's TimeoutStopSec, shortened: SIGKILL after 20 s.
  for (let i = 0; i < 400 && inspector.probe(pid).state === "alive"; i += 1) await sleep(50);
  if (inspector.probe(pid).state === "alive") signal("SIGKILL");
  for (let i = 0; i < 100 && inspector.probe(pid).state === "alive"; i += 1) await sleep(50);
  return 0;
}

/** The unit's Environment= as systemctl shows it: space-separated, an assignment with a space in double quotes. */
function environmentOf(definition: string): string {
  if (!existsSync(definition)) return "";
  const { env } = unitSchema.parse(JSON.parse(readFileSync(definition, "utf8")));
  return Object.entries(env)
    .map(([k, v]) => (/\s/.test(`${k}=${v}`) ? `"${k}=${v}"` : `${k}=${v}`))
    .join(" ");
}

/** An executable as systemd resolves a unit's command: an absolute path as is, else the first match in PATH. */
function resolveExecutable(file: string): string {
  if (file.includes("/")) return file;
  for (const folder of (process.env.PATH ?? "").split(":").filter(Boolean)) {
    const candidate = join(folder, file);
    if (existsSync(candidate)) return candidate;
  }
  return file;
}

/** systemd's timestamp, as `systemctl show` writes it (here in UTC): `Sun 2026-12-06 23:01:20 UTC`. */
const systemdStamp = new Intl.DateTimeFormat("en-US", {
  timeZone: "UTC",
  weekday: "short",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});
function systemdTime(iso: string): string {
  const parts = systemdStamp.formatToParts(new Date(iso));
  const part = (type: Intl.DateTimeFormatPartTypes) => parts.find((p) => p.type === type)?.value ?? "";
  return `${part("weekday")} ${part("year")}-${part("month")}-${part("day")} ${part("hour")}:${part("minute")}:${part("second")} UTC`;
}

/**
 * The unit's ExecStart= as systemctl shows it: `{ path=… ; argv[]=… ; ignore_errors=no ; start_time=[…] ;
 * stop_time=[n/a] ; pid=… ; code=(null) ; status=0/0 }`, with the running main process' start and PID;
 * empty for a unit that is not there.
 */
function execStartOf(dir: string, unit: string): string {
  const p = paths(dir, unit);
  if (!existsSync(p.definition)) return "";
  const { exec } = unitSchema.parse(JSON.parse(readFileSync(p.definition, "utf8")));
  const pid = mainPid(dir, unit);
  const startedAt = pid === null ? null : stateSchema.parse(JSON.parse(readFileSync(p.state, "utf8"))).started_at;
  const argv = exec.map((a) => (a === "" || /[\s"]/.test(a) ? `"${a.replace(/(["\\])/g, "\\$1")}"` : a)).join(" ");
  return (
    `{ path=${resolveExecutable(exec[0] ?? "")} ; argv[]=${argv} ; ignore_errors=no ; ` +
    `start_time=[${startedAt === null ? "n/a" : systemdTime(startedAt)}] ; stop_time=[n/a] ; pid=${pid ?? 0} ; code=(null) ; status=0/0 }`
  );
}

export async function systemctl(argv: string[]): Promise<number> {
  const dir = managerDir(argv);
  const args = argv.filter((a) => !a.startsWith("--") || a === "--value");
  const [verb, ...rest] = args;
  const unit =
    rest.filter((a) => a !== "--value" && !a.startsWith("-p") && !/^(MainPID|LoadState|Environment|ExecStart)$/.test(a)).at(-1) ?? "";
  switch (verb) {
    case "start":
      return startUnit(dir, unit);
    case "stop":
      return stopUnit(dir, unit);
    case "restart":
      await stopUnit(dir, unit);
      return startUnit(dir, unit);
    case "is-active": {
      const active = mainPid(dir, unit) !== null;
      process.stdout.write(`${active ? "active" : existsSync(paths(dir, unit).definition) ? "inactive" : "inactive"}\n`);
      return active ? 0 : 3;
    }
    case "show": {
      // -p MainPID (the default here), -p LoadState, -p Environment or -p ExecStart, as gpu-canary asks them.
      const property = argv.includes("LoadState")
        ? "LoadState"
        : argv.includes("Environment")
          ? "Environment"
          : argv.includes("ExecStart")
            ? "ExecStart"
            : "MainPID";
      const definition = paths(dir, unit).definition;
      const value =
        property === "LoadState"
          ? existsSync(definition)
            ? "loaded"
            : "not-found"
          : property === "Environment"
            ? environmentOf(definition)
            : property === "ExecStart"
              ? execStartOf(dir, unit)
              : String(mainPid(dir, unit) ?? 0);
      process.stdout.write(argv.includes("--value") ? `${value}\n` : `${property}=${value}\n`);
      return 0;
    }
    case "status": {
      // systemctl's own exit codes: 0 running, 3 not running, 4 no such unit.
      if (!existsSync(paths(dir, unit).definition)) {
        process.stderr.write(`Unit ${unit} could not be found.\n`);
        return 4;
      }
      const pid = mainPid(dir, unit);
      process.stdout.write(
        `● ${unit} - simulated unit\n     Loaded: loaded (${paths(dir, unit).definition})\n     Active: ${pid === null ? "inactive (dead)" : "active (running)"}\n${pid === null ? "" : `   Main PID: ${pid}\n`}`,
      );
      return pid === null ? 3 : 0;
    }
    default:
      process.stderr.write(`Unknown command verb ${String(verb)}.\n`);
      return 1;
  }
}

export function systemdRun(argv: string[]): number {
  const split = argv.indexOf("--");
  const options = split < 0 ? argv : argv.slice(0, split);
  const dir = managerDir(options);
  const command = split < 0 ? [] : argv.slice(split + 1);
  let unit = `run-u${Date.now()}`;
  const env: Record<string, string> = {};
  let runtime: number | undefined;
  for (let i = 0; i < options.length; i += 1) {
    const option = options[i] ?? "";
    const next = () => options[++i] ?? "";
    if (option === "--unit" || option === "-u") unit = next();
    else if (option.startsWith("--unit=")) unit = option.slice(7);
    else if (option === "--setenv" || option === "-E") {
      const [k, ...v] = next().split("=");
      if (k) env[k] = v.join("=");
    } else if (option.startsWith("--setenv=")) {
      const [k, ...v] = option.slice(9).split("=");
      if (k) env[k] = v.join("=");
    } else if (option === "--property" || option === "-p") {
      const value = next();
      if (value.startsWith("RuntimeMaxSec=")) runtime = Number(value.slice(14));
    } else if (option.startsWith("--property=RuntimeMaxSec=")) runtime = Number(option.slice(25));
  }
  if (command.length === 0) {
    process.stderr.write("Command line to execute required.\n");
    return 1;
  }
  if (mainPid(dir, unit) !== null) {
    process.stderr.write(`Failed to start transient service unit: Unit ${unit}.service already exists.\n`);
    return 1;
  }
  defineUnit(dir, unit, { exec: command, env, transient: true, ...(runtime ? { runtime_max_sec: runtime } : {}) });
  if (!options.includes("--quiet") && !options.includes("-q")) process.stdout.write(`Running as unit: ${unit}.service\n`);
  return startUnit(dir, unit);
}

/**
 * `journalctl -u UNIT | --user-unit UNIT [-f] [-o cat] [-n N] [--cursor-file F]`: the unit's output,
 * followed; a saved cursor wins over -n, as in journalctl.
 */
export async function journalctl(argv: string[]): Promise<number> {
  let dir = systemdDir();
  let unit = "";
  let cursorFile: string | null = null;
  let lines: number | null = null;
  const follow = argv.includes("-f") || argv.includes("--follow");
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i] ?? "";
    if (a === "-u" || a === "--unit") unit = argv[++i] ?? "";
    else if (a.startsWith("--unit=")) unit = a.slice(7);
    else if (a === "--user-unit") unit = argv[++i] ?? "";
    else if (a.startsWith("--user-unit=")) unit = a.slice(12);
    else if (a === "--cursor-file") cursorFile = argv[++i] ?? null;
    else if (a.startsWith("--cursor-file=")) cursorFile = a.slice(14);
    else if (a === "-n" || a === "--lines") lines = Number(argv[++i]);
    else if (a.startsWith("--lines=")) lines = Number(a.slice(8));
  }
  // The journal needs no bus: a user unit's log is found without $XDG_RUNTIME_DIR.
  if (argv.includes("--user") || argv.some((a) => a.startsWith("--user-unit"))) dir = join(dir, "user");
  const log = paths(dir, unit.replace(/\.service$/, "")).log;
  const fallback = paths(dir, unit).log;
  const file = existsSync(log) ? log : fallback;
  let offset = 0;
  if (cursorFile && existsSync(cursorFile)) offset = Number(/offset=(\d+)/.exec(readFileSync(cursorFile, "utf8"))?.[1] ?? 0);
  else if (lines !== null && Number.isInteger(lines) && lines >= 0 && existsSync(file)) {
    // Like journalctl -n N: start N lines before the end (0: at the end).
    const text = readFileSync(file);
    let i = text.length - 1;
    if (text[i] === 10) i -= 1;
    for (let seen = 0; lines > 0 && i >= 0; i -= 1) {
      if (text[i] !== 10) continue;
      seen += 1;
      if (seen === lines) break;
    }
    offset = lines > 0 ? i + 1 : text.length;
  }
  process.stdout.on("error", () => process.exit(0));
  for (;;) {
    const size = existsSync(file) ? (await stat(file)).size : 0;
    if (size > offset) {
      const handle = await open(file, "r");
      const buffer = Buffer.alloc(size - offset);
      await handle.read(buffer, 0, buffer.length, offset);
      await handle.close();
      // Only whole lines, as the journal stores lines.
      const end = buffer.lastIndexOf(10) + 1;
      if (end > 0) {
        process.stdout.write(buffer.subarray(0, end));
        offset += end;
        if (cursorFile) writeFileSync(cursorFile, `s=sim;offset=${offset}\n`);
      }
    }
    if (!follow) return 0;
    await sleep(100);
  }
}
