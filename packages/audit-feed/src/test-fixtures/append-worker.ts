// `<dir> <count> <fsync>`: append `count` events as fast as possible, once `<dir>/go` exists.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createAuditFeed } from "../index.ts";

const [dir = "", countText = "0", fsync = "true"] = process.argv.slice(2);
const feed = createAuditFeed({ dir, timeZone: "UTC", fsync: fsync === "true" });
while (!existsSync(join(dir, "go"))) await sleep(5);
for (let i = 0; i < Number(countText); i += 1) {
  // A long field makes a torn or interleaved write visible as a corrupt line.
  await feed.append({ event: "gate_refused", run_id: `${process.pid}-${i}`, gate: "test", reason: "x".repeat(3000 + (i % 7) * 500) });
}
