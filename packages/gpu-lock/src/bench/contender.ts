// `<impl> <dir> <ms>`: acquire and release the shared lock in a loop for <ms>; prints the count.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import lockfile from "proper-lockfile";
import { createGpuLock } from "../index.ts";

const [impl = "gpu-lock", dir = "", msText = "2000"] = process.argv.slice(2);
const until = Date.now() + Number(msText);
let count = 0;
if (impl === "gpu-lock") {
  const lock = createGpuLock({ path: join(dir, "gpu.lock"), ttlSeconds: 120, owner: "bench" });
  while (Date.now() < until) {
    const handle = await lock.acquire({ waitSeconds: Math.max(0, (until - Date.now()) / 1000) }).catch(() => null);
    if (!handle) break;
    await handle.release();
    count += 1;
  }
} else {
  const target = join(dir, "target");
  await writeFile(target, "", { flag: "a" });
  while (Date.now() < until) {
    const release = await lockfile
      .lock(target, { realpath: false, retries: { retries: 1000, minTimeout: 50, maxTimeout: 150, randomize: true } })
      .catch(() => null);
    if (!release) break;
    await release();
    count += 1;
  }
}
process.stdout.write(String(count));
