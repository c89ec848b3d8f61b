import { spawnSync } from "node:child_process";
import { lstat, mkdir, readFile, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { deadPid, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createFileLock } from "./file-lock.ts";
import type { ProcessInspector } from "./process-identity.ts";

async function writeRecord(path: string, record: object, ageMs = 0): Promise<void> {
  await writeFile(path, JSON.stringify(record));
  if (ageMs > 0) {
    const then = new Date(Date.now() - ageMs);
    await utimes(path, then, then);
  }
}

const record = (pid: number, extra: object = {}) => ({ pid, host: "here", acquired_at: "2026-11-28T08:00:00.000Z", ...extra });

const fakeInspector = (probe: ReturnType<ProcessInspector["probe"]>): ProcessInspector => ({
  probe: () => probe,
  selfToken: () => "boot:1",
});

describe("createFileLock", () => {
  it("takes a free lock with a complete record and releases it", async () => {
    const dir = await testdir();
    const path = join(dir, "locks", "x.lock");
    const lock = createFileLock({ path, host: "here" });
    const attempt = await lock.tryAcquire();
    expect(attempt.acquired).toBe(true);
    const onDisk = JSON.parse(await readFile(path, "utf8"));
    expect(onDisk).toMatchObject({ pid: process.pid, host: "here" });
    expect(onDisk.start_token).toMatch(/:\d+$/);
    if (!attempt.acquired) return;
    expect(await attempt.lock.release()).toBe("released");
    expect(await lock.inspect()).toEqual({ state: "free" });
    expect(await readdir(join(dir, "locks"))).toEqual([]);
  });

  it("refuses a second holder while the first is alive, and says who holds it", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    const first = await createFileLock({ path }).tryAcquire();
    expect(first.acquired).toBe(true);
    const second = await createFileLock({ path }).tryAcquire();
    expect(second.acquired).toBe(false);
    expect(!second.acquired && second.state.state).toBe("held");
    expect(!second.acquired && second.state.state === "held" && second.state.reason).toContain(`live process ${process.pid}`);
  });

  it("takes over from a holder that died", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    await writeRecord(path, record(deadPid()));
    const lock = createFileLock({ path, host: "here" });
    const state = await lock.inspect();
    expect(state.state === "stale" && state.reason).toMatch(/process \d+ is gone/);
    const attempt = await lock.tryAcquire();
    expect(attempt.acquired).toBe(true);
    expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
    expect((await readdir(dir)).filter((name) => name.includes("break"))).toEqual([]);
  });

  it("treats a live PID with another start token as reused, and a matching one as held", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    const inspector = fakeInspector({ state: "alive", startToken: "boot:500" });
    await writeRecord(path, record(4242, { start_token: "boot:499" }));
    const reused = await createFileLock({ path, host: "here", inspector }).inspect();
    expect(reused.state === "stale" && reused.reason).toContain("start token differs");
    await writeRecord(path, record(4242, { start_token: "boot:500" }));
    expect((await createFileLock({ path, host: "here", inspector }).inspect()).state).toBe("held");
    await writeRecord(path, record(4242));
    expect((await createFileLock({ path, host: "here", inspector }).inspect()).state).toBe("held");
  });

  it("sees a zombie holder as dead", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    await writeRecord(path, record(4242));
    const state = await createFileLock({ path, host: "here", inspector: fakeInspector({ state: "dead", why: "zombie" }) }).inspect();
    expect(state.state === "stale" && state.reason).toBe("process 4242 is a zombie");
  });

  it("never judges another host's record by PID", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    await writeRecord(path, { ...record(deadPid()), host: "other-box" });
    const attempt = await createFileLock({ path, host: "here" }).tryAcquire();
    expect(attempt.acquired).toBe(false);
    expect(!attempt.acquired && attempt.state.state === "held" && attempt.state.reason).toContain("another host (other-box)");
  });

  it("breaks a record whose expiry has passed, whoever holds it", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    await writeRecord(path, { ...record(process.pid), host: "other-box", expires_at: "2026-11-28T08:02:00.000Z" });
    const lock = createFileLock({
      path,
      host: "here",
      now: () => new Date("2026-11-28T08:05:00.000Z"),
      expiry: (r, now) => (Date.parse(String(r.expires_at)) <= now.getTime() ? "expired" : null),
    });
    expect((await lock.tryAcquire()).acquired).toBe(true);
  });

  it("keeps a fresh malformed record (its writer may be mid-way) and breaks it once old", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    for (const content of ["", '{"pid": 12', '{"pid": 0, "host": "h", "acquired_at": "x"}', "x".repeat(100)]) {
      await writeRecord(path, {});
      await writeFile(path, content);
      const fresh = await createFileLock({ path }).tryAcquire();
      expect(fresh.acquired).toBe(false);
      expect(!fresh.acquired && fresh.state.state).toBe("unreadable");
      const then = new Date(Date.now() - 5000);
      await utimes(path, then, then);
      const old = await createFileLock({ path }).tryAcquire();
      expect(old.acquired).toBe(true);
      if (old.acquired) await old.lock.release();
    }
  });

  it("never removes or follows a folder, a FIFO or a symlink at the lock path", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    await mkdir(path);
    const onFolder = await createFileLock({ path }).tryAcquire();
    expect(!onFolder.acquired && onFolder.state.state === "unreadable" && onFolder.state.reason).toContain("is a directory");
    await rm(path, { recursive: true });
    spawnSync("mkfifo", [path]);
    const onFifo = await createFileLock({ path }).tryAcquire();
    expect(!onFifo.acquired && onFifo.state.state).toBe("unreadable");
    await rm(path);
    const target = join(dir, "elsewhere.json");
    await writeRecord(target, record(deadPid()));
    await symlink(target, path);
    const onLink = await createFileLock({ path }).tryAcquire();
    expect(!onLink.acquired && onLink.state.state === "unreadable" && onLink.state.reason).toContain("symbolic link");
    expect((await lstat(path)).isSymbolicLink()).toBe(true);
    expect(JSON.parse(await readFile(target, "utf8")).host).toBe("here");
  });

  it("lets exactly one of many racers take over the same stale record", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    for (let round = 0; round < 20; round += 1) {
      await writeRecord(path, record(deadPid()));
      const attempts = await Promise.all(
        Array.from({ length: 12 }, (_, i) => createFileLock({ path, host: "here", pid: 1000 + i, inspector: raceInspector }).tryAcquire()),
      );
      expect(attempts.filter((a) => a.acquired)).toHaveLength(1);
      await rm(path);
    }
  });

  it("spares a successor's record when a holder that lost the lock releases", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    const first = await createFileLock({ path }).tryAcquire();
    if (!first.acquired) throw new Error("expected to acquire");
    await rm(path);
    const second = await createFileLock({ path }).tryAcquire();
    expect(second.acquired).toBe(true);
    expect(await first.lock.stillHeld()).toBe(false);
    expect(await first.lock.release()).toBe("lost");
    await expect(first.lock.update({})).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
    expect(second.acquired && (await second.lock.stillHeld())).toBe(true);
  });

  it("updates the holder's record atomically and keeps holding it", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    const attempt = await createFileLock({ path }).tryAcquire();
    if (!attempt.acquired) throw new Error("expected to acquire");
    await attempt.lock.update({ phase: "production_stopped" });
    expect(JSON.parse(await readFile(path, "utf8")).phase).toBe("production_stopped");
    expect(await attempt.lock.stillHeld()).toBe(true);
    expect(await attempt.lock.release()).toBe("released");
  });

  it("waits for a holder and gives up with a timeout that names it", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    const held = await createFileLock({ path }).tryAcquire();
    expect(held.acquired).toBe(true);
    await expect(createFileLock({ path }).acquire({}, { waitMs: 60 })).rejects.toMatchObject({
      code: "STATE_LOCK_TIMEOUT",
      message: expect.stringContaining(`live process ${process.pid}`),
    });
    const waiter = createFileLock({ path }).acquire({}, { waitMs: 5000 });
    setTimeout(() => void (held.acquired && held.lock.release()), 50);
    const lock = await waiter;
    expect(await lock.stillHeld()).toBe(true);
  });

  it("clears a break claim abandoned by a breaker that died", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    await writeRecord(path, record(deadPid()));
    const stats = await lstat(path, { bigint: true });
    const claim = `${path}.break-${stats.ino}-${stats.mtimeNs}`;
    await writeFile(claim, "abandoned");
    const lock = createFileLock({ path, host: "here", breakClaimGraceMs: 0 });
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect((await lock.tryAcquire()).acquired).toBe(true);
  });
});

const raceInspector: ProcessInspector = {
  probe: (pid) => (pid >= 1000 && pid < 2000 ? { state: "alive", startToken: null } : { state: "dead", why: "gone" }),
  selfToken: () => null,
};
