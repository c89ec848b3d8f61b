// A worker for the mutual-exclusion tests: `<dir> <iterations> lock|nolock|rmw`.
// Inside the critical section it fails at once if another worker is inside (an `occupied`
// marker exists), then does a slow read-modify-write of a counter file.
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import * as z from "zod";
import { updateJsonState, withFileLock } from "../index.ts";

const [dir = "", iterationsText = "0", mode = "lock"] = process.argv.slice(2);
const iterations = Number(iterationsText);
const occupied = join(dir, "occupied");
const counter = join(dir, "counter");

async function critical(): Promise<void> {
  if (existsSync(occupied)) {
    process.stderr.write("overlap: occupied marker found\n");
    process.exit(1);
  }
  await writeFile(occupied, String(process.pid));
  const value = Number(await readFile(counter, "utf8"));
  // Hold the section long enough that, without the lock, two workers do overlap.
  await sleep(1);
  await writeFile(counter, String(value + 1));
  await rm(occupied);
}

while (!existsSync(join(dir, "go"))) await sleep(5);
const schema = z.object({ count: z.number() });
for (let i = 0; i < iterations; i += 1) {
  if (mode === "lock") await withFileLock(join(dir, "counter.lock"), critical, { waitMs: 60_000 });
  else if (mode === "nolock") await critical();
  else {
    await updateJsonState(
      join(dir, "state.json"),
      schema,
      (current) => {
        const count = current.status === "ok" ? current.value.count : 0;
        return { write: { count: count + 1 }, answer: null };
      },
      { lockWaitMs: 60_000 },
    );
  }
}
