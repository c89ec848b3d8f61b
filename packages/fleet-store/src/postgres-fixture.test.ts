import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { POSTGRES_MISSING, postgresBinDir, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";

async function fakeServer(root: string, version: string): Promise<void> {
  await mkdir(join(root, version, "bin"), { recursive: true });
  await writeFile(join(root, version, "bin", "postgres"), "");
}

describe("the tests' PostgreSQL", () => {
  it("fails naming the install command when no server is installed, instead of skipping", async () => {
    const root = await testdir();
    expect(() => postgresBinDir(join(root, "nothing-here"))).toThrow(POSTGRES_MISSING);
    await fakeServer(root, "14");
    await mkdir(join(root, "16", "bin"), { recursive: true }); // client tools only: no server
    expect(() => postgresBinDir(root)).toThrow("apt-get install -y postgresql");
  });

  it("takes the newest Debian server of version 15 or later", async () => {
    const root = await testdir();
    await fakeServer(root, "15");
    await fakeServer(root, "17");
    await fakeServer(root, "9");
    expect(postgresBinDir(root)).toBe(join(root, "17", "bin"));
  });
});
