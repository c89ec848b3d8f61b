// `<mode> <dir> [count]`:
//   count: `count` acquisitions; inside, fail if `occupied` exists, else create it, increment the counter, remove it
//   once:  one try without waiting; prints "won" (and holds 1.5 s) or "lost"
//   crash: acquire, then SIGKILL itself while holding
import { existsSync } from "node:fs";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createGpuLock } from "../index.ts";

const [mode = "", dir = "", countText = "0"] = process.argv.slice(2);
const lock = createGpuLock({ path: join(dir, "locks", "gpu_maintenance.lock"), ttlSeconds: 120, owner: `worker ${process.pid}` });
if (mode !== "crash") while (!existsSync(join(dir, "go"))) await sleep(5);

if (mode === "count") {
  for (let i = 0; i < Number(countText); i += 1) {
    const handle = await lock.acquire({ purpose: "stress" });
    const occupied = join(dir, "occupied");
    if (existsSync(occupied)) {
      process.stderr.write("overlap: occupied marker found\n");
      process.exit(1);
    }
    await writeFile(occupied, String(process.pid));
    const value = Number(await readFile(join(dir, "counter"), "utf8"));
    await writeFile(join(dir, "counter"), String(value + 1));
    await rm(occupied);
    await handle.release();
  }
} else if (mode === "once") {
  const handle = await lock.acquire({ waitSeconds: 0 }).catch(() => null);
  process.stdout.write(handle ? "won" : "lost");
  if (handle) {
    await sleep(1500);
    await handle.release();
  }
} else if (mode === "crash") {
  await lock.acquire({ purpose: "about to crash" });
  process.stdout.write("holding\n");
  process.kill(process.pid, "SIGKILL");
}
