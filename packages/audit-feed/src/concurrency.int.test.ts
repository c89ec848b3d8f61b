import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { runTs, testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { dayOf } from "./files.ts";

const worker = join(import.meta.dirname, "test-fixtures", "append-worker.ts");

describe("appends from many processes", () => {
  it("never interleave or tear a line: 8 processes × 1,000 events all parse, none missing", async () => {
    const dir = join(await testdir(), "epochs");
    await mkdir(dir, { recursive: true });
    const day = dayOf(new Date(), "UTC");
    const runs = Array.from({ length: 8 }, () => runTs(worker, [dir, "1000", "true"], { timeoutMs: 170_000 }));
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await writeFile(join(dir, "go"), "");
    const results = await Promise.all(runs);
    expect(results.map((r) => r.code)).toEqual(Array(8).fill(0));
    // A run that crosses midnight UTC spreads over two files; read both.
    const texts = await Promise.all(
      [day, dayOf(new Date(), "UTC")]
        .filter((d, i, all) => all.indexOf(d) === i)
        .map((d) => readFile(join(dir, `gpu_canary_${d}.jsonl`), "utf8")),
    );
    const lines = texts.join("").trimEnd().split("\n");
    expect(lines).toHaveLength(8000);
    const ids = new Set(lines.map((line) => (JSON.parse(line) as { run_id: string }).run_id));
    expect(ids.size).toBe(8000);
  }, 180_000);
});
