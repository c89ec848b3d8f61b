import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it, onTestFinished } from "vitest";
import { nodeFs } from "./fs-ops.ts";
import { makeDir, makeDirSync } from "./make-dir.ts";

/** A read-only tmpfs of its own: EROFS from the kernel, as a read-only KLR_HOME gives it. */
function readOnlyMount(dir: string): string {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir]);
  } catch (error) {
    throw new Error("this test mounts a read-only tmpfs, which needs root (as CI runs)", { cause: error });
  }
  onTestFinished(() => void execFileSync("umount", ["-l", dir]));
  return dir;
}

describe("makeDir / makeDirSync", () => {
  it("say EROFS on a read-only file system, where Node's recursive mkdir says ENOENT", async () => {
    const ro = readOnlyMount(join(await testdir(), "ro"));
    const deep = join(ro, ".kloros", "locks");
    expect(() => mkdirSync(deep, { recursive: true })).toThrow(expect.objectContaining({ code: "ENOENT" }));
    expect(() => makeDirSync(deep)).toThrow(expect.objectContaining({ code: "EROFS" }));
    await expect(makeDir(nodeFs, deep)).rejects.toMatchObject({ code: "EROFS" });
  });

  it("say ENOTDIR for a file in the way, and create what is missing", async () => {
    const dir = await testdir();
    await writeFile(join(dir, "plain"), "");
    expect(() => makeDirSync(join(dir, "plain", "a", "b"))).toThrow(expect.objectContaining({ code: "ENOTDIR" }));
    await expect(makeDir(nodeFs, join(dir, "plain", "a"))).rejects.toMatchObject({ code: "ENOTDIR" });
    makeDirSync(join(dir, "x", "y"));
    await makeDir(nodeFs, join(dir, "x", "z", "w"));
    expect(
      execFileSync("find", [join(dir, "x"), "-type", "d"], { encoding: "utf8" })
        .split("\n")
        .sort(),
    ).toContain(join(dir, "x", "z", "w"));
  });
});
