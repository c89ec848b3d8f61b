import { appendFile, mkdir, rename, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir, until } from "@gpu-canary/testing";
import { SYSTEMD_STANDINS } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { followLog } from "./log-follower.ts";
import type { LogSource } from "@gpu-canary/config";

function follow(source: LogSource, stateDir: string, extra: { unit?: string; env?: Record<string, string>; journalctl?: string } = {}) {
  const lines: string[] = [];
  const errors: string[] = [];
  const following: { path: string; offset: number }[] = [];
  const controller = new AbortController();
  const done = followLog({
    source,
    unit: extra.unit ?? "vllm.service",
    stateDir,
    onLine: (l) => void lines.push(l),
    onError: (m) => void errors.push(m),
    onFollowing: (where) => void following.push(where),
    signal: controller.signal,
    pollMs: 25,
    ...(extra.env ? { env: extra.env } : {}),
    ...(extra.journalctl ? { journalctl: extra.journalctl } : {}),
  });
  const stop = async () => {
    controller.abort();
    await done;
  };
  onTestFinished(stop);
  return { lines, errors, following, stop };
}

describe("followLog", () => {
  it("follows a file like tail -F: appends, truncation, rotation, and resumes from its offset", async () => {
    const dir = await testdir();
    const log = join(dir, "vllm.log");
    await writeFile(log, "old line before the daemon started\n");
    const f = follow({ kind: "file", path: log }, dir);
    // open at the end of the file: the old line is not news
    await until(() => f.following.length > 0, "the file open", { timeoutMs: 15_000, pollMs: 25 });
    expect(f.following).toEqual([{ path: log, offset: "old line before the daemon started\n".length }]);
    await appendFile(log, "one\ntw");
    await until(() => f.lines.includes("one"), "an appended line", { timeoutMs: 15_000, pollMs: 25 });
    await appendFile(log, "o\n");
    await until(() => f.lines.includes("two"), "a line finished in a second write", { timeoutMs: 15_000, pollMs: 25 });
    await truncate(log, 0);
    await appendFile(log, "after truncation\n");
    await until(() => f.lines.includes("after truncation"), "a line after truncation", { timeoutMs: 15_000, pollMs: 25 });
    await appendFile(log, "last of the old file\n");
    await rename(log, `${log}.1`);
    await writeFile(log, "first of the new file\n");
    await until(() => f.lines.includes("first of the new file"), "a line after rotation", { timeoutMs: 15_000, pollMs: 25 });
    await f.stop();
    expect(f.lines).toEqual(["one", "two", "after truncation", "last of the old file", "first of the new file"]);
    // Written while nobody followed: read on the next start, from the saved offset.
    await appendFile(log, "while the daemon was down\n");
    const again = follow({ kind: "file", path: log }, dir);
    await until(() => again.lines.length > 0, "the resumed line", { timeoutMs: 15_000, pollMs: 25 });
    expect(again.lines).toEqual(["while the daemon was down"]);
    // opened once, at the saved place: rotations and truncations since are not new openings
    expect(again.following).toEqual([{ path: log, offset: "first of the new file\n".length }]);
    expect(f.following).toHaveLength(1);
  }, 30_000);

  it("keeps a character whole when a read splits its bytes, in a file and in a command's output", async () => {
    const dir = await testdir();
    const log = join(dir, "vllm.log");
    await writeFile(log, "");
    const f = follow({ kind: "file", path: log }, dir);
    await new Promise((r) => setTimeout(r, 150));
    // 65,535 bytes, then "é" (0xc3 0xa9): the follower's 64 KiB read ends between its two bytes.
    const before = `${"a".repeat(99)}\n`.repeat(655) + "b".repeat(35);
    await appendFile(log, `${before}é out of memory\n`);
    await until(() => f.lines.some((l) => l.includes("out of memory")), "the split line", { timeoutMs: 15_000, pollMs: 25 });
    expect(f.lines.at(-1)).toBe(`${"b".repeat(35)}é out of memory`);

    const script = join(dir, "split.sh");
    // The two bytes of "é" in two writes, far enough apart to arrive as two chunks.
    await writeFile(script, "printf 'Caf\\303'; sleep 0.3; printf '\\251 out of memory\\n'; exec sleep 30\n");
    const c = follow({ kind: "command", command: `sh ${script}` }, dir);
    await until(() => c.lines.length > 0, "the command's line", { timeoutMs: 15_000, pollMs: 25 });
    expect(c.lines).toEqual(["Café out of memory"]);
  }, 30_000);

  it("follows the journal through journalctl, resuming from its cursor file after a restart", async () => {
    const dir = await testdir();
    const systemd = join(dir, "systemd");
    await mkdir(systemd, { recursive: true });
    const unitLog = join(systemd, "vllm.log");
    await writeFile(unitLog, "history before the first start\n");
    const env = { SIM_SYSTEMD_DIR: systemd, PATH: `${SYSTEMD_STANDINS}:${process.env.PATH ?? ""}` };
    const f = follow({ kind: "journal" }, dir, { env, journalctl: join(SYSTEMD_STANDINS, "journalctl") });
    await new Promise((r) => setTimeout(r, 1500));
    await appendFile(unitLog, "ValueError: No available memory for the cache blocks.\n");
    await until(() => f.lines.length > 0, "a journal line", { timeoutMs: 20_000, pollMs: 25 });
    await f.stop();
    expect(f.lines).toEqual(["ValueError: No available memory for the cache blocks."]);
    await appendFile(unitLog, "while down\n");
    const again = follow({ kind: "journal" }, dir, { env, journalctl: join(SYSTEMD_STANDINS, "journalctl") });
    await until(() => again.lines.length > 0, "the resumed journal line", { timeoutMs: 20_000, pollMs: 25 });
    expect(again.lines).toEqual(["while down"]);
  }, 60_000);

  it("follows a command's output and restarts it when it ends", async () => {
    const dir = await testdir();
    const f = follow({ kind: "command", command: "sh -c 'echo started; sleep 0.2'" }, dir);
    await until(() => f.lines.filter((l) => l === "started").length >= 2, "a restarted command", { timeoutMs: 20_000, pollMs: 25 });
    expect(f.errors[0]).toMatch(/ended \(exit 0\); following again/);
  }, 30_000);
});
