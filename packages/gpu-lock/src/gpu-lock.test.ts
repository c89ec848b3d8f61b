import { spawnSync } from "node:child_process";
import { lstat, mkdir, readFile, readdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { ProcessInspector } from "@gpu-canary/state-file";
import { deadPid, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { type LockAuditEvent, createGpuLock } from "./gpu-lock.ts";
import { withGpuLock } from "./with-gpu-lock.ts";

async function setup(overrides: Partial<Parameters<typeof createGpuLock>[0]> = {}) {
  const dir = await testdir();
  const path = join(dir, "locks", "gpu_maintenance.lock");
  const events: LockAuditEvent[] = [];
  const make = (more: Partial<Parameters<typeof createGpuLock>[0]> = {}) =>
    createGpuLock({
      path,
      ttlSeconds: 120,
      owner: "test",
      host: "gpu-host",
      audit: { append: (e) => Promise.resolve(void events.push(e)) },
      ...overrides,
      ...more,
    });
  await mkdir(join(dir, "locks"), { recursive: true });
  return { dir, path, events, lock: make(), make };
}

const legacy = (pid: number, extra: object = {}) =>
  JSON.stringify({
    pid,
    host: "gpu-host",
    owner: "kloros",
    acquired_at: "2026-11-28T08:00:00Z",
    expires_at: "2099-01-01T00:00:00Z",
    ...extra,
  });

/** Each kind of damage a lock file can suffer, with the words its reason must contain. */
const unreadableRecords: [content: string, why: string][] = [
  ["", "is empty"],
  ['{"pid": 1, "host": "gpu-h', "not valid JSON"],
  [legacy(12, { owner: 7 }), "invalid owner"],
  [`[${legacy(12)}]`, "expected object, received array"],
];

describe("the GPU maintenance lock", () => {
  it("writes a full record and a generation that grows across releases", async () => {
    const { lock, path, events } = await setup();
    const first = await lock.acquire({ purpose: "canary", runId: "run-1" });
    const record = JSON.parse(await readFile(path, "utf8"));
    expect(record).toMatchObject({ pid: process.pid, host: "gpu-host", owner: "test", purpose: "canary", run_id: "run-1", generation: 1 });
    expect(record.start_token).toMatch(/:\d+$/);
    expect(Date.parse(record.expires_at) - Date.parse(record.acquired_at)).toBeGreaterThanOrEqual(119_900);
    expect(Date.parse(record.expires_at) - Date.parse(record.acquired_at)).toBeLessThanOrEqual(120_000);
    expect(await first.release()).toBe("released");
    const second = await lock.acquire();
    expect(second.generation).toBe(2);
    await second.release();
    expect(events.map((e) => e.event)).toEqual(["lock_acquired", "lock_released", "lock_acquired", "lock_released"]);
  });

  it("refuses a second holder at once, naming the first", async () => {
    const { lock, make } = await setup();
    await lock.acquire({ runId: "run-1" });
    await expect(make().acquire({ waitSeconds: 0 })).rejects.toMatchObject({
      code: "GPU_LOCK_HELD",
      kind: "refused",
      message: expect.stringContaining(`PID ${process.pid}`),
    });
    const status = await make().status();
    expect(status).toMatchObject({ state: "held", held: true, stale: false, alive: true, awaitsRecovery: false });
  });

  it("waits for the holder when asked to", async () => {
    const { lock, make } = await setup();
    const held = await lock.acquire();
    setTimeout(() => void held.release(), 200);
    const next = await make().acquire({ waitSeconds: 5 });
    expect(next.generation).toBe(2);
  });

  it("reads a legacy five-field record: PID-only liveness, generation 0", async () => {
    const { lock, path } = await setup();
    await writeFile(path, legacy(process.pid));
    expect(await lock.status()).toMatchObject({ state: "held", holder: { owner: "kloros" }, alive: true });
    await writeFile(path, legacy(deadPid()));
    const status = await lock.status();
    expect(status).toMatchObject({ state: "stale", stale: true, held: true, alive: false });
    expect(status.reason).toMatch(/process \d+ is gone/);
    const handle = await lock.acquire({ waitSeconds: 0 });
    expect(handle.generation).toBe(1);
  });

  it("treats a reused PID (other start token) and a zombie as dead, a matching token as alive", async () => {
    const alive = (token: string): ProcessInspector => ({
      probe: () => ({ state: "alive", startToken: token }),
      selfToken: () => "boot:me",
    });
    const { path, make } = await setup();
    await writeFile(path, legacy(4242, { start_token: "boot:1" }));
    expect((await make({ inspector: alive("boot:2") }).status()).state).toBe("stale");
    expect((await make({ inspector: alive("boot:1") }).status()).state).toBe("held");
    const zombie: ProcessInspector = { probe: () => ({ state: "dead", why: "zombie" }), selfToken: () => null };
    expect((await make({ inspector: zombie }).status()).reason).toContain("zombie");
  });

  it("never judges another host's record by PID, only by expiry", async () => {
    const { path, lock } = await setup();
    await writeFile(path, legacy(deadPid(), { host: "other-host" }));
    expect(await lock.status()).toMatchObject({ state: "held", alive: null });
    await writeFile(path, legacy(deadPid(), { host: "other-host", expires_at: "2020-01-01T00:00:00Z" }));
    expect((await lock.status()).reason).toContain("lease expired");
    expect((await lock.acquire({ waitSeconds: 0 })).generation).toBe(1);
  });

  it("takes over an expired record even while its PID lives", async () => {
    const { path, lock } = await setup();
    await writeFile(path, legacy(process.pid, { expires_at: Math.floor(Date.now() / 1000) - 5 }));
    expect((await lock.status()).stale).toBe(true);
    await lock.acquire({ waitSeconds: 0 });
  });

  it("keeps a long holder's lock past the TTL by renewing, and loses it when renewal stops", async () => {
    const { lock, make } = await setup({ ttlSeconds: 1 });
    const handle = await lock.acquire();
    const stop = handle.startRenewal(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 2200));
    await expect(make().acquire({ waitSeconds: 0 })).rejects.toMatchObject({ code: "GPU_LOCK_HELD" });
    stop();
    await new Promise((resolve) => setTimeout(resolve, 1300));
    const other = await make().acquire({ waitSeconds: 0 });
    await expect(handle.renew()).rejects.toMatchObject({ code: "LOCK_LOST" });
    await expect(handle.checkFence()).rejects.toMatchObject({ code: "LOCK_LOST" });
    expect(await handle.release()).toBe("lost");
    expect((await lock.status()).holder?.generation).toBe(other.generation);
  });

  it("refuses a crashed quiesced run's lock to plain acquirers and releasers; recovery takes it", async () => {
    const { path, lock, events } = await setup();
    await writeFile(
      path,
      legacy(deadPid(), { generation: 7, run_id: "r-7", phase: "canary", production_stopped_at: "2026-11-28T08:00:05Z" }),
    );
    expect(await lock.status()).toMatchObject({ state: "stale", awaitsRecovery: true });
    // The same journal in a live holder's lock is a run in progress, not a crash.
    await writeFile(
      path,
      legacy(process.pid, { generation: 7, run_id: "r-7", phase: "canary", production_stopped_at: "2026-11-28T08:00:05Z" }),
    );
    expect(await lock.status()).toMatchObject({ state: "held", awaitsRecovery: false });
    await writeFile(
      path,
      legacy(deadPid(), { generation: 7, run_id: "r-7", phase: "canary", production_stopped_at: "2026-11-28T08:00:05Z" }),
    );
    await expect(lock.acquire({ waitSeconds: 10 })).rejects.toMatchObject({ code: "CRASHED_RUN_AWAITS_RECOVERY", kind: "refused" });
    await expect(lock.releaseStale()).rejects.toMatchObject({ code: "CRASHED_RUN_AWAITS_RECOVERY" });
    const { handle, evicted } = await lock.takeOverForRecovery({ purpose: "recover" });
    expect(evicted).toMatchObject({ run_id: "r-7", production_stopped_at: "2026-11-28T08:00:05Z" });
    expect(handle.generation).toBe(8);
    expect(events.map((e) => e.event)).toEqual(["lock_stale_released", "lock_acquired"]);
  });

  it("lets a charged run's stale lock go to anyone", async () => {
    const { path, lock } = await setup();
    await writeFile(path, legacy(deadPid(), { production_stopped_at: "2026-11-28T08:00:05Z", charged_at: "2026-11-28T08:00:40Z" }));
    expect((await lock.acquire({ waitSeconds: 0 })).generation).toBe(1);
  });

  it("releases a stale lock on request but never a live holder's", async () => {
    const { path, lock, make, events } = await setup();
    await writeFile(path, legacy(deadPid(), { run_id: "old" }));
    expect(await lock.releaseStale()).toMatchObject({ released: "stale", evicted: { run_id: "old" } });
    expect(await lock.releaseStale()).toMatchObject({ released: "free" });
    await lock.acquire();
    await expect(make().releaseStale()).rejects.toMatchObject({ code: "GPU_LOCK_HELD" });
    expect(events.map((e) => e.event)).toEqual(["lock_stale_released", "lock_acquired"]);
  });

  it("force-releases anything, records the evicted holder, and fences it out", async () => {
    const { lock, make, events } = await setup();
    const victim = await lock.acquire({ runId: "victim" });
    const result = await make().forceRelease("operator said so");
    expect(result).toMatchObject({ wasLive: true, evicted: { run_id: "victim" }, generation: 2 });
    await expect(victim.checkFence()).rejects.toMatchObject({ code: "LOCK_LOST" });
    const successor = await make().acquire();
    expect(successor.generation).toBe(3);
    expect(await victim.release()).toBe("lost");
    expect((await lock.status()).holder?.generation).toBe(3);
    expect(events.find((e) => e.event === "lock_force_released")).toMatchObject({
      evicted: { run_id: "victim" },
      reason: "operator said so",
    });
  });

  it("force-releases a lock that was never taken here, its folder not there yet: a free lock, answered, not a crash", async () => {
    const { make } = await setup();
    expect(await make().forceRelease("before anything ran")).toMatchObject({ evicted: null, wasLive: false, generation: 1 });
    expect((await make().acquire()).generation).toBe(2);
  });

  it("fails closed on an unreadable record, however old: every taker refuses, naming the file, and leaves it as it is", async () => {
    const { path, lock, dir, events } = await setup();
    for (const [content, why] of unreadableRecords) {
      await writeFile(path, content);
      const old = new Date(Date.now() - 60_000);
      await utimes(path, old, old);
      const before = await lstat(path, { bigint: true });
      expect(await lock.status()).toMatchObject({ state: "unreadable", held: true, stale: false, holder: null });
      expect((await lock.status()).hint).toContain("gpu-canary lock release --force");
      const refused = {
        code: "GPU_LOCK_UNREADABLE",
        kind: "fault",
        message: expect.stringContaining(`${path} is unreadable: it `),
        hint: expect.stringContaining("`gpu-canary lock release --force` moves it aside"),
      };
      const started = Date.now();
      await expect(lock.acquire({ waitSeconds: 5 })).rejects.toMatchObject(refused);
      await expect(lock.acquire({ waitSeconds: 0 })).rejects.toThrow(why);
      expect(Date.now() - started).toBeLessThan(1000);
      await expect(lock.releaseStale()).rejects.toMatchObject(refused);
      await expect(lock.takeOverForRecovery({ purpose: "recover" })).rejects.toMatchObject(refused);
      const after = await lstat(path, { bigint: true });
      expect([after.ino, after.mtimeNs, after.size]).toEqual([before.ino, before.mtimeNs, before.size]);
      expect(await readFile(path, "utf8")).toBe(content);
      expect(await readdir(join(dir, "locks"))).toEqual(["gpu_maintenance.lock"]);
    }
    expect(events).toEqual([]);
  });

  it("force-release moves an unreadable record aside, content kept and audited; then the lock is free", async () => {
    const { path, dir, make, events } = await setup();
    let minute = 0;
    for (const [content, why] of unreadableRecords) {
      minute += 1;
      const lock = make({ now: () => new Date(Date.UTC(2026, 10, 28, 13, minute)) });
      await writeFile(path, content);
      const result = await lock.forceRelease("operator looked");
      const aside = `${path}.unreadable-2026-11-28T13${String(minute).padStart(2, "0")}00.000Z`;
      expect(result).toMatchObject({ evicted: null, wasLive: false, movedAside: { path: aside, reason: expect.stringContaining(why) } });
      expect(await readFile(aside, "utf8")).toBe(content);
      expect(events.at(-1)).toEqual({
        event: "lock_force_released",
        run_id: null,
        evicted: null,
        generation: result.generation,
        reason: "operator looked",
        unreadable: { reason: result.movedAside?.reason, moved_to: aside },
      });
      expect(await lock.status()).toMatchObject({ state: "free" });
      const handle = await lock.acquire({ waitSeconds: 0 });
      expect(handle.generation).toBe(result.generation + 1);
      expect(await handle.release()).toBe("released");
    }
    const left = (await readdir(join(dir, "locks"))).filter((name) => name !== "gpu_maintenance.generation");
    expect(left).toHaveLength(unreadableRecords.length);
    expect(left.every((name) => name.startsWith("gpu_maintenance.lock.unreadable-"))).toBe(true);
  });

  it("leaves an oversized file for the operator to move by hand", async () => {
    const { path, lock } = await setup();
    await writeFile(path, "x".repeat(2 * 1024 * 1024));
    expect(await lock.status()).toMatchObject({ state: "unreadable", hint: expect.stringContaining("by hand") });
    await expect(lock.acquire({ waitSeconds: 0 })).rejects.toMatchObject({ code: "GPU_LOCK_UNREADABLE", kind: "fault" });
    await expect(lock.forceRelease("x")).rejects.toMatchObject({ code: "GPU_LOCK_UNREADABLE", kind: "fault" });
    expect((await lstat(path)).size).toBe(2 * 1024 * 1024);
  });

  it("never follows or removes a folder, FIFO or symlink at the lock path", async () => {
    const { path, lock, dir } = await setup();
    await mkdir(path);
    expect(await lock.status()).toMatchObject({ state: "unreadable" });
    await expect(lock.forceRelease("x")).rejects.toMatchObject({ code: "GPU_LOCK_UNREADABLE", kind: "fault" });
    await rm(path, { recursive: true });
    spawnSync("mkfifo", [path]);
    expect((await lock.status()).reason).toContain("not a regular file");
    await rm(path);
    await writeFile(join(dir, "elsewhere"), legacy(deadPid()));
    await symlink(join(dir, "elsewhere"), path);
    expect((await lock.status()).reason).toContain("symbolic link");
    await expect(lock.acquire({ waitSeconds: 0 })).rejects.toMatchObject({ code: "GPU_LOCK_UNREADABLE" });
    expect((await readdir(join(dir, "locks"))).sort()).toEqual(["gpu_maintenance.lock"]);
  });

  it("a folder or a link where the generation counter goes: a fault naming the counter, the lock given back or left as it was", async () => {
    const { path, lock, dir, make, events } = await setup();
    const counter = join(dir, "locks", "gpu_maintenance.generation");
    await mkdir(counter);
    const asFolder = {
      code: "STATE_WRITE_FAILED",
      kind: "fault",
      message: `could not write ${counter}: a folder is where the file should be (EISDIR)`,
      hint: expect.stringContaining(`move the folder ${counter} aside`),
    };
    await expect(lock.acquire({ waitSeconds: 0 })).rejects.toMatchObject(asFolder);
    expect(await lock.status()).toMatchObject({ state: "free" });
    // A holder elsewhere: a forced release that cannot bump the counter leaves its record alone.
    await writeFile(path, legacy(process.pid, { generation: 4 }));
    await expect(make({ owner: "other" }).forceRelease("x")).rejects.toMatchObject(asFolder);
    expect(JSON.parse(await readFile(path, "utf8"))).toMatchObject({ pid: process.pid, generation: 4 });
    await rm(path);
    await rm(counter, { recursive: true });
    await symlink("gpu_maintenance.generation", counter);
    await expect(lock.acquire({ waitSeconds: 0 })).rejects.toMatchObject({
      code: "STATE_WRITE_FAILED",
      message: `could not write ${counter}: a symbolic link on its path loops, or is one gpu-canary does not follow (ELOOP)`,
    });
    expect(await lock.status()).toMatchObject({ state: "free" });
    expect(events.map((e) => e.event)).toEqual([]);
  });

  it("a file where the lock's folder should be: the file system's fix, not \"move the lock aside\"", async () => {
    const { dir } = await setup();
    await writeFile(join(dir, "shelf"), "");
    const lock = createGpuLock({ path: join(dir, "shelf", "gpu_maintenance.lock"), ttlSeconds: 120, owner: "test" });
    const status = await lock.status();
    expect(status).toMatchObject({
      state: "unreadable",
      reason: "cannot be opened: a part of its path is a file where a folder should be (ENOTDIR)",
    });
    expect(status.hint).toContain(`namei -l ${lock.path}`);
    await expect(lock.acquire({ waitSeconds: 0 })).rejects.toMatchObject({
      code: "GPU_LOCK_UNREADABLE",
      hint: expect.stringContaining(`namei -l ${lock.path}`),
    });
  });

  it("releases the lock when the locked work throws, and turns a signal into an interruption", async () => {
    const { lock } = await setup();
    await expect(withGpuLock(lock, { signals: () => () => undefined }, () => Promise.reject(new Error("boom")))).rejects.toThrow("boom");
    expect((await lock.status()).state).toBe("free");
    let fire: (signal: NodeJS.Signals) => void = () => undefined;
    const run = withGpuLock(lock, { signals: (handler) => ((fire = handler), () => undefined) }, async (_handle, signal) => {
      await new Promise((resolve) => signal.addEventListener("abort", resolve));
      return "wound down";
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    fire("SIGTERM");
    await expect(run).rejects.toMatchObject({ code: "INTERRUPTED", exitCode: 143 });
    expect((await lock.status()).state).toBe("free");
  });
});
