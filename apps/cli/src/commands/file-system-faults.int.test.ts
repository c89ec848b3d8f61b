import { execFile } from "node:child_process";
import { open, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { runShipped } from "../test-fixtures/shipped.ts";

const run = promisify(execFile);
const night = "20261201";

/** The CLI as a real process, with an environment free of the caller's KLR_* settings. */
async function gpuCanary(home: string, args: string[]) {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("KLR_")));
  const result = await runShipped(args, { env: { ...clean, KLR_HOME: home }, timeoutMs: 30_000 });
  const error = args.includes("--json")
    ? (JSON.parse(result.stdout) as { error: { code: string; message: string; hint: string } }).error
    : null;
  return { ...result, error };
}

const budgetReset = ["budget", "reset", "--yes", "--date", night, "--json"];
const lockRun = ["lock", "run", "--json", "--", "true"];
const forceRelease = ["lock", "release", "--force", "--json"];

/** What the contract asks of the outside world's faults: exit 4, a code, the file named, the errno said, a fix. */
function expectFault(result: Awaited<ReturnType<typeof gpuCanary>>, file: string, errno: string, fix: string, code = "STATE_WRITE_FAILED") {
  expect(result.code, result.stdout + result.stderr).toBe(4);
  expect(result.stdout + result.stderr).not.toContain("INTERNAL");
  expect(result.stdout + result.stderr).not.toContain("this is a bug");
  expect(result.error?.code).toBe(code);
  expect(result.error?.message).toContain(file);
  expect(result.error?.message).toContain(`(${errno})`);
  expect(result.error?.hint).toContain(fix);
}

/** A tmpfs of its own, so that the kernel itself says EROFS or ENOSPC, not a simulated error. */
async function tmpfs(dir: string, options: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  try {
    await run("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir]);
  } catch (error) {
    throw new Error("this test mounts a tmpfs, which needs root (as CI runs)", { cause: error });
  }
  onTestFinished(async () => {
    await run("umount", ["-l", dir]).catch(() => undefined);
  });
  return dir;
}

/** KLR_HOME's folders as a first run leaves them. */
async function layout(home: string) {
  const locks = join(home, ".kloros", "locks");
  const maintenance = join(home, ".kloros", "maintenance");
  await mkdir(locks, { recursive: true });
  await mkdir(maintenance, { recursive: true });
  await mkdir(join(home, "out", "orchestration", "epochs"), { recursive: true });
  return { locks, maintenance, budget: join(maintenance, `gpu_budget_${night}.json`), counter: join(locks, "gpu_maintenance.generation") };
}

describe("the outside world's file-system faults reach the operator as faults naming the file and the fix, never as a bug", () => {
  it("EROFS: KLR_HOME on a read-only mount, its folders there or not yet", async () => {
    const dir = await testdir();
    const home = await tmpfs(join(dir, "home"), "size=4m");
    const files = await layout(home);
    await run("mount", ["-o", "remount,ro", home]);
    const bare = await tmpfs(join(dir, "bare"), "ro,size=1m");
    const [reset, locked, forced, fresh] = await Promise.all([
      gpuCanary(home, budgetReset),
      gpuCanary(home, lockRun),
      gpuCanary(home, forceRelease),
      // Node's recursive mkdir says ENOENT here; the fault must still say read-only.
      gpuCanary(bare, lockRun),
    ]);
    expectFault(reset, files.maintenance, "EROFS", `findmnt -T ${files.maintenance}`);
    expectFault(locked, files.locks, "EROFS", "point KLR_HOME at a writable folder");
    expectFault(forced, files.counter, "EROFS", "remount it read-write");
    expectFault(fresh, join(bare, ".kloros", "locks"), "EROFS", "remount it read-write");
  }, 60_000);

  it("ENOSPC: KLR_HOME's disk full", async () => {
    const home = await tmpfs(join(await testdir(), "home"), "size=1m");
    const files = await layout(home);
    const filler = await open(join(home, "filler"), "w");
    try {
      for (;;) await filler.write(Buffer.alloc(64 * 1024, 1));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
    } finally {
      await filler.close();
    }
    const [reset, locked] = await Promise.all([gpuCanary(home, budgetReset), gpuCanary(home, lockRun)]);
    expectFault(reset, files.maintenance, "ENOSPC", `df -h ${files.maintenance}`);
    expectFault(locked, files.locks, "ENOSPC", `df -h ${files.locks}`);
  }, 60_000);

  it("EISDIR: a folder where the budget file or the generation counter goes", async () => {
    const home = await testdir();
    const files = await layout(home);
    await mkdir(files.budget);
    await mkdir(files.counter);
    const [reset, locked, forced] = await Promise.all([
      gpuCanary(home, budgetReset),
      gpuCanary(home, lockRun),
      gpuCanary(home, forceRelease),
    ]);
    expectFault(reset, files.budget, "EISDIR", `move the folder ${files.budget} aside`);
    expectFault(locked, files.counter, "EISDIR", `move the folder ${files.counter} aside`);
    expectFault(forced, files.counter, "EISDIR", `move the folder ${files.counter} aside`);
    // Nothing ran on a lock it could not number, and nothing was left held.
    const status = await gpuCanary(home, ["lock", "status", "--json"]);
    expect(JSON.parse(status.stdout)).toMatchObject({ state: "free" });
  }, 60_000);

  it("ELOOP: the maintenance folder a symlink loop, the generation counter a link to itself", async () => {
    const home = await testdir();
    const files = await layout(home);
    await run("rmdir", [files.maintenance]);
    await symlink("maintenance", files.maintenance);
    await symlink("gpu_maintenance.generation", files.counter);
    const [reset, locked] = await Promise.all([gpuCanary(home, budgetReset), gpuCanary(home, lockRun)]);
    expectFault(reset, files.budget, "ELOOP", `namei -l ${files.budget}`);
    expectFault(locked, files.counter, "ELOOP", `namei -l ${files.counter}`);
  }, 60_000);

  it("ENOTDIR and EPERM: a file where .kloros should be; an immutable locks folder", async () => {
    const dir = await testdir();
    const flat = join(dir, "flat");
    await mkdir(flat);
    await writeFile(join(flat, ".kloros"), "");
    const home = await tmpfs(join(dir, "home"), "size=1m");
    const files = await layout(home);
    await run("chattr", ["+i", files.locks]);
    onTestFinished(async () => {
      await run("chattr", ["-i", files.locks]).catch(() => undefined);
    });
    const [reset, locked, immutable] = await Promise.all([
      gpuCanary(flat, budgetReset),
      gpuCanary(flat, lockRun),
      gpuCanary(home, lockRun),
    ]);
    const budget = join(flat, ".kloros", "maintenance", `gpu_budget_${night}.json`);
    expectFault(reset, budget, "ENOTDIR", `namei -l ${budget}`);
    // The lock cannot even be looked at: unreadable, with the way to it named as the fault.
    expectFault(locked, join(flat, ".kloros", "locks", "gpu_maintenance.lock"), "ENOTDIR", "namei -l", "GPU_LOCK_UNREADABLE");
    expectFault(immutable, files.locks, "EPERM", "lsattr");
  }, 60_000);

  it("says it in text too: error and hint on stderr, nothing on stdout", async () => {
    const home = await testdir();
    const files = await layout(home);
    await mkdir(files.budget);
    const result = await gpuCanary(home, ["budget", "reset", "--yes", "--date", night]);
    expect(result.code).toBe(4);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      `error: could not write ${files.budget}: a folder is where the file should be (EISDIR)\n` +
        `hint: move the folder ${files.budget} aside (gpu-canary never removes it for you), then run the command again (the file's previous content is unchanged)\n`,
    );
  }, 30_000);
});
