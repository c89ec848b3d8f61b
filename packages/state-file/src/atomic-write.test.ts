import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { formatJson, writeJsonAtomic } from "./atomic-write.ts";
import { type FsOps, nodeFs } from "./fs-ops.ts";

type Step = "open" | "write" | "sync" | "rename" | "dirsync";

/** A real file system that fails at one step, as a full disk or an I/O error would. */
function failingAt(step: Step): { fs: FsOps; calls: string[] } {
  const calls: string[] = [];
  const boom = () => Object.assign(new Error(`injected ${step} failure`), { code: "EIO" });
  const fs: FsOps = {
    ...nodeFs,
    open: async (path, flags, mode) => {
      const isDir = flags === "r";
      calls.push(isDir ? "open-dir" : "open");
      if (step === "open" && !isDir) throw boom();
      const handle = await nodeFs.open(path, flags, mode);
      return new Proxy(handle, {
        get(target, prop, receiver) {
          if (prop === "write" && step === "write") return () => Promise.reject(boom());
          if (prop === "sync") {
            return async () => {
              calls.push(isDir ? "sync-dir" : "sync");
              if ((step === "sync" && !isDir) || (step === "dirsync" && isDir)) throw boom();
              return target.sync();
            };
          }
          const value: unknown = Reflect.get(target, prop, receiver);
          return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
        },
      });
    },
    rename: async (from, to) => {
      calls.push("rename");
      if (step === "rename") throw boom();
      return nodeFs.rename(from, to);
    },
  };
  return { fs, calls };
}

describe("writeJsonAtomic", () => {
  it("writes formatted JSON that jq reads, creating the folder", async () => {
    const dir = await testdir();
    const path = join(dir, "deep", "budget.json");
    await writeJsonAtomic(path, { seconds_used: 1.5 });
    expect(await readFile(path, "utf8")).toBe('{\n  "seconds_used": 1.5\n}\n');
    expect(await readdir(join(dir, "deep"))).toEqual(["budget.json"]);
  });

  it("fsyncs the temp file before the rename and the folder after it", async () => {
    const dir = await testdir();
    const { fs, calls } = failingAt("open-never" as Step);
    await writeJsonAtomic(join(dir, "a.json"), { a: 1 }, { fs });
    expect(calls).toEqual(["open", "sync", "rename", "open-dir", "sync-dir"]);
  });

  for (const step of ["open", "write", "sync", "rename"] as const) {
    it(`keeps the old content and leaves no temp file when ${step} fails`, async () => {
      const dir = await testdir();
      const path = join(dir, "state.json");
      await writeFile(path, formatJson({ seconds_used: 7 }));
      const { fs } = failingAt(step);
      await expect(writeJsonAtomic(path, { seconds_used: 99 }, { fs })).rejects.toMatchObject({
        code: "STATE_WRITE_FAILED",
        message: expect.stringContaining(path),
      });
      expect(JSON.parse(await readFile(path, "utf8"))).toEqual({ seconds_used: 7 });
      expect(await readdir(dir)).toEqual(["state.json"]);
    });
  }

  it("a folder at the path, or a file where its folder should be: the file named, the cause and the fix in plain words", async () => {
    const dir = await testdir();
    const folder = join(dir, "state.json");
    await mkdir(folder);
    await expect(writeJsonAtomic(folder, { v: 1 })).rejects.toMatchObject({
      code: "STATE_WRITE_FAILED",
      message: `could not write ${folder}: a folder is where the file should be (EISDIR)`,
      hint: expect.stringContaining(`move the folder ${folder} aside`),
    });
    await writeFile(join(dir, "plain"), "");
    const under = join(dir, "plain", "deeper", "state.json");
    await expect(writeJsonAtomic(under, { v: 1 })).rejects.toMatchObject({
      message: `could not write ${under}: a part of its path is a file where a folder should be (ENOTDIR)`,
      hint: expect.stringContaining(`namei -l ${under}`),
    });
  });

  it("reports a failed folder fsync even though the new content is in place", async () => {
    const dir = await testdir();
    const path = join(dir, "state.json");
    const { fs } = failingAt("dirsync");
    await expect(writeJsonAtomic(path, { v: 2 }, { fs })).rejects.toMatchObject({ code: "STATE_WRITE_FAILED" });
    expect(JSON.parse(await readFile(path, "utf8"))).toEqual({ v: 2 });
  });
});
