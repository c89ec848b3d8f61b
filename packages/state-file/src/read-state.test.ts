import { execFileSync } from "node:child_process";
import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import * as z from "zod";
import { nodeFs } from "./fs-ops.ts";
import { loadJsonState, readJsonState } from "./read-state.ts";

const schema = z.looseObject({ seconds_used: z.number().nonnegative() });

async function unreadableReason(path: string, options = {}): Promise<string> {
  const result = await readJsonState(path, schema, { hint: "run the repair", ...options });
  if (result.status !== "unreadable") throw new Error(`expected unreadable, got ${result.status}`);
  expect(result.error.code).toBe("STATE_UNREADABLE");
  expect(result.error.message).toContain(path);
  expect(result.error.hint).toBe("run the repair");
  return result.error.reason;
}

describe("readJsonState", () => {
  it("tells a missing file from a present one", async () => {
    const dir = await testdir();
    const path = join(dir, "b.json");
    expect(await readJsonState(path, schema)).toEqual({ status: "missing" });
    await writeFile(path, '{"seconds_used": 3, "extra": true}');
    const result = await readJsonState(path, schema);
    expect(result.status).toBe("ok");
    expect(result.status === "ok" && result.value).toEqual({ seconds_used: 3, extra: true });
  });

  it.each([
    ["", "is empty"],
    ["   \n", "is empty"],
    ["{not json", "is not valid JSON"],
    ['{"seconds_used": -1}', "invalid seconds_used"],
    ['{"seconds_used": "12"}', "invalid seconds_used"],
    ["[]", "is not the expected document"],
  ])("names the file and the problem for content %j", async (content, reason) => {
    const dir = await testdir();
    const path = join(dir, "b.json");
    await writeFile(path, content);
    expect(await unreadableReason(path)).toContain(reason);
  });

  it("refuses a folder, a FIFO and a symlink at the path without blocking or following", async () => {
    const dir = await testdir();
    const folder = join(dir, "folder.json");
    await mkdir(folder);
    expect(await unreadableReason(folder)).toContain("is a directory");
    const fifo = join(dir, "fifo.json");
    execFileSync("mkfifo", [fifo]);
    expect(await unreadableReason(fifo)).toContain("not a regular file");
    const target = join(dir, "target.json");
    await writeFile(target, '{"seconds_used": 1}');
    const link = join(dir, "link.json");
    await symlink(target, link);
    expect(await unreadableReason(link)).toContain("symbolic link");
  });

  it("refuses an oversized file", async () => {
    const dir = await testdir();
    const path = join(dir, "big.json");
    await writeFile(path, `{"seconds_used": 1, "pad": "${"x".repeat(2000)}"}`);
    expect(await unreadableReason(path, { maxBytes: 1000 })).toContain("more than the 1000");
  });

  it("reports a permission error it cannot see as root, with the file system's fix instead of the caller's", async () => {
    const dir = await testdir();
    const path = join(dir, "b.json");
    await writeFile(path, '{"seconds_used": 1}');
    const fs = { ...nodeFs, open: () => Promise.reject(Object.assign(new Error("denied"), { code: "EACCES" })) };
    const result = await readJsonState(path, schema, { hint: "run the repair", fs });
    if (result.status !== "unreadable") throw new Error(`expected unreadable, got ${result.status}`);
    expect(result.error.reason).toBe("cannot be opened: permission denied (EACCES)");
    expect(result.error.pathFault).toBe(true);
    expect(result.error.hint).toContain(`namei -l ${path}`);
  });

  it("tells a link loop above the file and a file where a folder should be from a link at the path", async () => {
    const dir = await testdir();
    await symlink("loop", join(dir, "loop"));
    await writeFile(join(dir, "plain"), "");
    for (const [path, errno] of [
      [join(dir, "loop", "b.json"), "ELOOP"],
      [join(dir, "plain", "b.json"), "ENOTDIR"],
    ] as const) {
      const result = await readJsonState(path, schema, { hint: "run the repair" });
      if (result.status !== "unreadable") throw new Error(`expected unreadable, got ${result.status}`);
      expect(result.error.reason).toMatch(new RegExp(`^cannot be opened: .*\\(${errno}\\)$`));
      expect(result.error.reason).not.toContain("is a symbolic link");
      expect(result.error.pathFault).toBe(true);
      expect(result.error.hint).toContain(`namei -l ${path}`);
    }
  });

  it("throws the unreadable error from loadJsonState and answers undefined when missing", async () => {
    const dir = await testdir();
    const path = join(dir, "b.json");
    expect(await loadJsonState(path, schema)).toBeUndefined();
    await writeFile(path, "garbage");
    await expect(loadJsonState(path, schema)).rejects.toMatchObject({ code: "STATE_UNREADABLE" });
  });
});
