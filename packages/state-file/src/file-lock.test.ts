import { spawnSync } from "node:child_process";
import { lstat, mkdir, readFile, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { deadPid, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { createFileLock, withFileLock } from "./file-lock.ts";
import type { ProcessInspector } from "./process-identity.ts";

async function writeRecord(path: string, record: object, ageMs = 0): Promise<void> {
  await writeFile(path, JSON.stringify(record));
  if (ageMs > 0) {
    const then = new Date(Date.now() - ageMs);
    await utimes(path, then, then);
  }
}

const record = (pid: number, extra: object = {}) => ({ pid, host: "here", acquired_at: "2026-11-28T08:00:00.000Z", ...extra });

/** Each kind of damage a lock file can suffer, with the words its reason must contain. */
const unreadableRecords: [content: string, why: string][] = [
  ["", "is empty"],
  ['{"pid": 12', "not valid JSON"],
  ['{"pid": 0, "host": "h", "acquired_at": "x"}', "invalid pid"],
  ['[{"pid": 12, "host": "here", "acquired_at": "x"}]', "is not the expected document"],
];

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

  it("never takes over an unreadable record, however old: it fails closed and leaves the file as it is", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    for (const [content, why] of unreadableRecords) {
      await writeFile(path, content);
      const then = new Date(Date.now() - 60_000);
      await utimes(path, then, then);
      const before = await lstat(path, { bigint: true });
      const attempt = await createFileLock({ path, host: "here" }).tryAcquire();
      expect(!attempt.acquired && attempt.state.state === "unreadable" && attempt.state.reason).toContain(why);
      const started = Date.now();
      await expect(createFileLock({ path, host: "here" }).acquire({}, { waitMs: 5000 })).rejects.toMatchObject({
        code: "STATE_UNREADABLE",
        kind: "fault",
        message: expect.stringContaining(path),
        hint: expect.stringContaining("aside"),
      });
      expect(Date.now() - started).toBeLessThan(1000);
      await expect(withFileLock(path, () => Promise.resolve("ran"), { host: "here", waitMs: 5000 })).rejects.toMatchObject({
        code: "STATE_UNREADABLE",
      });
      const after = await lstat(path, { bigint: true });
      expect([after.ino, after.mtimeNs, after.size]).toEqual([before.ino, before.mtimeNs, before.size]);
      expect(await readFile(path, "utf8")).toBe(content);
      expect(await readdir(dir)).toEqual(["x.lock"]);
    }
  });

  it("moves an unreadable record aside with its content, after which the lock can be taken", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    let minute = 0;
    const lock = createFileLock({ path, host: "here", now: () => new Date(Date.UTC(2026, 10, 28, 13, minute)) });
    for (const [content] of unreadableRecords) {
      minute += 1;
      await writeFile(path, content);
      const state = await lock.inspect();
      if (state.state !== "unreadable" || !state.file) throw new Error("expected an unreadable file");
      const aside = await lock.moveAside(state.file);
      expect(aside).toBe(`${path}.unreadable-2026-11-28T13${String(minute).padStart(2, "0")}00.000Z`);
      expect(await readFile(aside ?? "", "utf8")).toBe(content);
      expect(await lock.inspect()).toEqual({ state: "free" });
      const attempt = await lock.tryAcquire();
      expect(attempt.acquired).toBe(true);
      if (attempt.acquired) await attempt.lock.release();
    }
    expect((await readdir(dir)).filter((name) => !name.includes(".unreadable-"))).toEqual([]);
  });

  it("never moves a record aside over another, nor one that changed since it was judged", async () => {
    const dir = await testdir();
    const path = join(dir, "x.lock");
    const lock = createFileLock({ path, host: "here", now: () => new Date("2026-11-28T13:00:00.000Z") });
    const writeAndMoveAside = async (content: string) => {
      await writeFile(path, content);
      const state = await lock.inspect();
      return state.state === "unreadable" && state.file ? lock.moveAside(state.file) : null;
    };
    expect(await writeAndMoveAside("first")).toBe(`${path}.unreadable-2026-11-28T130000.000Z`);
    expect(await writeAndMoveAside("second")).toBe(`${path}.unreadable-2026-11-28T130000.000Z-1`);
    expect(await readFile(`${path}.unreadable-2026-11-28T130000.000Z`, "utf8")).toBe("first");
    await writeFile(path, "judged");
    const judged = await lock.inspect();
    if (judged.state !== "unreadable" || !judged.file) throw new Error("expected an unreadable file");
    await rm(path);
    await writeRecord(path, record(process.pid));
    expect(await lock.moveAside(judged.file)).toBeNull();
    expect(JSON.parse(await readFile(path, "utf8")).pid).toBe(process.pid);
    expect((await readdir(dir)).filter((name) => name.includes("break"))).toEqual([]);
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

  it("a file where the lock's folder should be: taking the lock fails naming the lock file, never as a bug", async () => {
    const dir = await testdir();
    await writeFile(join(dir, "locks"), "");
    const path = join(dir, "locks", "x.lock");
    const expected = {
      code: "STATE_WRITE_FAILED",
      message: `could not write ${path}: a part of its path is a file where a folder should be (ENOTDIR)`,
    };
    await expect(createFileLock({ path }).tryAcquire()).rejects.toMatchObject(expected);
    await expect(createFileLock({ path }).acquire()).rejects.toMatchObject(expected);
    await expect(withFileLock(path, () => Promise.resolve(1))).rejects.toMatchObject(expected);
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
