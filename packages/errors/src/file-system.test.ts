import { describe, expect, it } from "vitest";
import { fileSystemProblem } from "./index.ts";

describe("fileSystemProblem", () => {
  const path = "/home/kloros/.kloros/locks/gpu_maintenance.generation";

  it.each([
    ["ENOSPC", "is full (ENOSPC)", "df -h /home/kloros/.kloros/locks"],
    ["EDQUOT", "quota", "quota"],
    ["EROFS", "is read-only (EROFS)", "findmnt -T /home/kloros/.kloros/locks"],
    ["EISDIR", "a folder is where the file should be (EISDIR)", `move the folder ${path} aside`],
    ["ENOTDIR", "a file where a folder should be (ENOTDIR)", `namei -l ${path}`],
    ["ELOOP", "(ELOOP)", `namei -l ${path}`],
    ["EACCES", "permission denied (EACCES)", "write /home/kloros/.kloros/locks"],
    ["EPERM", "permission denied (EPERM)", "lsattr"],
    ["EIO", "I/O error (EIO)", "journalctl -k"],
  ])("%s: the cause in plain words with its errno, and a fix naming the file or its folder", (errno, reason, fix) => {
    const problem = fileSystemProblem(errno, path);
    expect(problem?.errno).toBe(errno);
    expect(problem?.reason).toContain(reason);
    expect(problem?.fix).toContain(fix);
  });

  it("leaves other errors to Node's own words", () => {
    expect(fileSystemProblem("ENOENT", path)).toBeNull();
    expect(fileSystemProblem(undefined, path)).toBeNull();
  });
});
