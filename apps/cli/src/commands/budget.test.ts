import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

async function home() {
  const dir = await testdir();
  await mkdir(join(dir, ".kloros", "maintenance"), { recursive: true });
  return { dir, budget: (date: string) => join(dir, ".kloros", "maintenance", `gpu_budget_${date}.json`) };
}

describe("gpu-canary budget", () => {
  it("shows a night with no file as nothing used, the last night's window when closed", async () => {
    const { dir } = await home();
    const result = await cli(["budget", "--json"], { KLR_HOME: dir });
    expect(result.code).toBe(0);
    expect(result.json()).toMatchObject({ date: "20261128", seconds_used: 0, max_seconds: 60, seconds_left: 60 });
  });

  it("reads the file the checklist's jq reads, for the night given", async () => {
    const { dir, budget } = await home();
    await writeFile(budget("20261127"), '{"seconds_used": 41.5}');
    const result = await cli(["budget", "--date", "20261127"], { KLR_HOME: dir, KLR_GPU_MAINTENANCE_MAX_DOWNTIME: "45" });
    expect(result.stdout).toContain("Used: 41.5 s of 45 s; left: 3.5 s");
  });

  it("fails closed on a corrupt file: exit 4, names the file and the repair, leaves it untouched", async () => {
    const { dir, budget } = await home();
    await writeFile(budget("20261128"), "{corrupt");
    for (const argv of [["budget"], ["budget", "--json"]]) {
      const result = await cli(argv, { KLR_HOME: dir });
      expect(result.code).toBe(4);
      const message = argv.includes("--json") ? JSON.stringify(result.json().error) : result.stderr;
      expect(message).toContain(budget("20261128"));
      expect(message).toContain("gpu-canary budget reset --yes --date 20261128");
      expect(message).not.toContain("    at ");
    }
    expect(await readFile(budget("20261128"), "utf8")).toBe("{corrupt");
  });

  it("refuses reset without --yes and changes nothing", async () => {
    const { dir, budget } = await home();
    await writeFile(budget("20261128"), '{"seconds_used": 30}');
    const result = await cli(["budget", "reset"], { KLR_HOME: dir });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("refusing without --yes");
    expect(await readFile(budget("20261128"), "utf8")).toBe('{"seconds_used": 30}');
  });

  it("repairs a corrupt file with reset --yes", async () => {
    const { dir, budget } = await home();
    await writeFile(budget("20261128"), "{corrupt");
    const reset = await cli(["budget", "reset", "--yes", "--json"], { KLR_HOME: dir });
    expect(reset.code).toBe(0);
    expect(reset.json()).toMatchObject({ reset: true, previous_seconds_used: null, seconds_used: 0 });
    expect((await cli(["budget", "--json"], { KLR_HOME: dir })).json()).toMatchObject({ seconds_used: 0, seconds_left: 60 });
    expect(JSON.parse(await readFile(budget("20261128"), "utf8")).resets[0].previous_text).toBe("{corrupt");
  });

  it("refuses a malformed --date with exit 2 and writes nothing", async () => {
    const { dir } = await home();
    for (const date of ["2026-11-28", "20261332", "tonight"]) {
      const result = await cli(["budget", "reset", "--yes", "--date", date], { KLR_HOME: dir });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain("--date: expected a calendar date as YYYYMMDD");
    }
    expect(await readdir(join(dir, ".kloros", "maintenance"))).toEqual([]);
  });
});
