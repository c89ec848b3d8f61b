import { mkdir, readFile, stat, utimes, writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { deadPid, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

async function home() {
  const dir = await testdir();
  const locks = join(dir, ".kloros", "locks");
  await mkdir(locks, { recursive: true });
  return { dir, lockFile: join(locks, "gpu_maintenance.lock") };
}

const record = (pid: number, extra: object = {}) =>
  JSON.stringify({
    pid,
    host: hostname(),
    owner: "kloros",
    acquired_at: "2026-11-28T13:00:00Z",
    expires_at: "2099-01-01T00:00:00Z",
    ...extra,
  });

describe("gpu-canary lock", () => {
  it("says the lock is free", async () => {
    const { dir } = await home();
    const text = await cli(["lock", "status"], { KLR_HOME: dir });
    expect(text).toMatchObject({ code: 0, stdout: "GPU lock: free\n" });
    expect((await cli(["lock", "status", "--json"], { KLR_HOME: dir })).json()).toMatchObject({ held: false, stale: false, holder: null });
  });

  it("shows a live holder and refuses to release it (exit 3, unchanged)", async () => {
    const { dir, lockFile } = await home();
    await writeFile(lockFile, record(process.pid, { run_id: "r-1" }));
    const status = await cli(["lock", "status"], { KLR_HOME: dir });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain(`GPU lock: held by PID ${process.pid}`);
    expect(status.stdout).toContain("run r-1");
    const release = await cli(["lock", "release"], { KLR_HOME: dir });
    expect(release.code).toBe(3);
    expect(release.stderr).toContain("is held");
    expect(JSON.parse(await readFile(lockFile, "utf8")).run_id).toBe("r-1");
  });

  it("releases a stale lock (the checklist's dead PID) and audits it", async () => {
    const { dir, lockFile } = await home();
    const pid = deadPid();
    await writeFile(lockFile, record(pid));
    const status = (await cli(["lock", "status", "--json"], { KLR_HOME: dir })).json();
    expect(status).toMatchObject({ held: true, stale: true, holder: { pid } });
    const release = await cli(["lock", "release", "--json"], { KLR_HOME: dir });
    expect(release.code).toBe(0);
    expect(release.json()).toMatchObject({ released: true, evicted: { pid } });
    const audit = await cli(["audit", "tail", "--json"], { KLR_HOME: dir });
    expect(JSON.parse(audit.stdout.trim())).toMatchObject({ event: "lock_stale_released", evicted: { pid } });
  });

  it("refuses a crashed run's lock to plain release, and force-releases it with a loud warning", async () => {
    const { dir, lockFile } = await home();
    await writeFile(lockFile, record(deadPid(), { run_id: "crashed", production_stopped_at: "2026-11-28T13:00:02Z", generation: 4 }));
    const status = await cli(["lock", "status"], { KLR_HOME: dir });
    expect(status.stdout).toContain("A crashed run awaits recovery");
    const release = await cli(["lock", "release"], { KLR_HOME: dir });
    expect(release.code).toBe(3);
    expect(release.stderr).toContain("a crashed run awaits recovery");
    const forced = await cli(["lock", "release", "--force", "--reason", "operator"], { KLR_HOME: dir });
    expect(forced.code).toBe(0);
    expect(forced.stderr).toContain("WARNING");
    expect(forced.stderr).toContain("production may be down");
    expect(forced.stdout).toContain("next generation 5");
    const events = (await cli(["audit", "query", "--event", "lock_force_released", "--json"], { KLR_HOME: dir })).stdout.trim().split("\n");
    expect(JSON.parse(events[0] ?? "")).toMatchObject({ evicted: { run_id: "crashed" }, reason: "operator", generation: 5 });
  });

  it("reports an unreadable record with exit 0 from status, naming the file and the fix", async () => {
    const { dir, lockFile } = await home();
    await writeFile(lockFile, "{garbage");
    const status = await cli(["lock", "status", "--json"], { KLR_HOME: dir });
    expect(status.code).toBe(0);
    expect(status.json()).toMatchObject({ state: "unreadable", held: true, holder: null, path: lockFile });
    const text = await cli(["lock", "status"], { KLR_HOME: dir });
    expect(text.stdout).toContain(`GPU lock: UNREADABLE (${lockFile}): it is not valid JSON`);
    expect(text.stdout).toContain("`gpu-canary lock release --force` moves it aside");
  });

  it.each([
    ["empty", ""],
    ["partial", '{"pid": 4242, "host": "gpu'],
    ["of the wrong schema", JSON.stringify({ pid: "4242", host: "h", owner: "kloros", acquired_at: "x", expires_at: "y" })],
    ["an array", `[${record(4242)}]`],
  ])("fails closed on an unreadable lock file (%s), exit 4, until --force moves it aside, audited", async (_kind, content) => {
    const { dir, lockFile } = await home();
    const env = { KLR_HOME: dir };
    await writeFile(lockFile, content);
    const old = new Date(Date.now() - 60_000);
    await utimes(lockFile, old, old);
    const before = await stat(lockFile, { bigint: true });
    for (const argv of [
      ["lock", "run", "--wait", "5", "--", "true"],
      ["lock", "release"],
    ]) {
      const refused = await cli(argv, env);
      expect(refused.code).toBe(4);
      expect(refused.stderr).toContain(`error: the GPU maintenance lock ${lockFile} is unreadable: it `);
      expect(refused.stderr).toContain("hint: `gpu-canary lock release --force` moves it aside");
      expect(refused.stderr).not.toMatch(/^\s+at /m);
    }
    expect(await readFile(lockFile, "utf8")).toBe(content);
    const after = await stat(lockFile, { bigint: true });
    expect([after.ino, after.mtimeNs]).toEqual([before.ino, before.mtimeNs]);

    const forced = await cli(["lock", "release", "--force", "--reason", "damaged", "--json"], env);
    expect(forced.code).toBe(0);
    const aside = `${lockFile}.unreadable-2026-11-28T134000.000Z`;
    expect(forced.json()).toMatchObject({ released: true, forced: true, evicted: null, moved_aside: { path: aside } });
    expect(await readFile(aside, "utf8")).toBe(content);
    const events = (await cli(["audit", "query", "--event", "lock_force_released", "--json"], env)).stdout.trim().split("\n");
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0] ?? "")).toMatchObject({ evicted: null, reason: "damaged", unreadable: { moved_to: aside } });

    expect((await cli(["lock", "status", "--json"], env)).json()).toMatchObject({ state: "free" });
    expect((await cli(["lock", "run", "--wait", "0", "--", "true"], env)).code).toBe(0);
  });

  it("runs a command under the lock and passes its exit code through", async () => {
    const { dir } = await home();
    await writeFile(join(dir, "counter"), "0");
    const script = join(import.meta.dirname, "..", "..", "test", "critical-section.mjs");
    const ok = await cli(["lock", "run", "--", process.execPath, script, dir, "0"], { KLR_HOME: dir });
    expect(ok.code).toBe(0);
    const seven = await cli(["lock", "run", "--wait", "5", "--", process.execPath, script, dir, "7"], { KLR_HOME: dir });
    expect(seven.code).toBe(7);
    expect(await readFile(join(dir, "counter"), "utf8")).toBe("2");
    expect((await cli(["lock", "status", "--json"], { KLR_HOME: dir })).json()).toMatchObject({ held: false });
  });

  it("keeps renewing while a command outlives the TTL, so nobody takes the lock", async () => {
    const { dir } = await home();
    const env = { KLR_HOME: dir, KLR_LOCK_TTL: "1" };
    const running = cli(["lock", "run", "--", "sleep", "2.5"], env);
    await new Promise((resolve) => setTimeout(resolve, 1800));
    const status = (await cli(["lock", "status", "--json"], env)).json();
    expect(status).toMatchObject({ held: true, stale: false });
    expect((await cli(["lock", "run", "--wait", "0", "--", "true"], env)).code).toBe(3);
    expect((await running).code).toBe(0);
  });

  it("exits 3, or the chosen code, when the lock is held", async () => {
    const { dir, lockFile } = await home();
    await writeFile(lockFile, record(process.pid));
    const held = await cli(["lock", "run", "--wait", "0", "--", "true"], { KLR_HOME: dir });
    expect(held.code).toBe(3);
    expect(held.stderr).toContain("could not take the GPU lock");
    expect((await cli(["lock", "run", "--wait", "0.2", "--conflict-exit-code", "75", "--", "true"], { KLR_HOME: dir })).code).toBe(75);
  });

  it("answers 127 for a missing command and 2 for bad flags", async () => {
    const { dir } = await home();
    expect((await cli(["lock", "run", "--", "/nonexistent/cmd"], { KLR_HOME: dir })).code).toBe(127);
    expect((await cli(["lock", "run", "--wait", "soon", "--", "true"], { KLR_HOME: dir })).code).toBe(2);
    expect((await cli(["lock", "run", "--conflict-exit-code", "300", "--", "true"], { KLR_HOME: dir })).code).toBe(2);
    expect((await cli(["lock", "run"], { KLR_HOME: dir })).code).toBe(2);
  });
});
