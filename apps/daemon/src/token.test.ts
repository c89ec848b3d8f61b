import { statSync } from "node:fs";
import { chmod, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type GpuCanaryError, exitCodeOf } from "@gpu-canary/errors";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { ensureToken } from "./token.ts";

describe("ensureToken", () => {
  it("writes a new token readable by its owner alone, and reads it back", async () => {
    const path = join(await testdir(), "daemon.token");
    const token = await ensureToken(path);
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await ensureToken(path)).toBe(token);
  });

  it("refuses a token file others can read, a symlink or a folder: a settings error (exit 2) naming the fix", async () => {
    const dir = await testdir();
    const shared = join(dir, "shared.token");
    await writeFile(shared, `${"a".repeat(64)}\n`);
    await chmod(shared, 0o644);
    await expect(ensureToken(shared)).rejects.toMatchObject({
      code: "DAEMON_TOKEN_FILE_UNSAFE",
      kind: "usage",
      message: expect.stringContaining("can be read by others (mode 0644)"),
      hint: `chmod 600 ${shared}`,
    });
    // Its group alone reading it is as unsafe: the token lets its holder stop production.
    await chmod(shared, 0o640);
    await expect(ensureToken(shared)).rejects.toMatchObject({
      code: "DAEMON_TOKEN_FILE_UNSAFE",
      message: expect.stringContaining("(mode 0640)"),
    });
    const link = join(dir, "link.token");
    await chmod(shared, 0o600);
    await symlink(shared, link);
    await expect(ensureToken(link)).rejects.toMatchObject({
      code: "DAEMON_TOKEN_FILE_UNSAFE",
      message: expect.stringContaining("symbolic link"),
    });
    const folder = join(dir, "folder.token");
    await mkdir(folder);
    const error = (await ensureToken(folder).then(
      () => null,
      (e: unknown) => e,
    )) as GpuCanaryError;
    expect(error).toMatchObject({
      message: expect.stringContaining("is not a regular file"),
      hint: expect.stringContaining(`rmdir ${folder}`),
    });
    expect(exitCodeOf(error.kind)).toBe(2);
  });
});
