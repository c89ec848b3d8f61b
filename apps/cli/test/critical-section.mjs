// Used by `lock run` tests: fail if another run is inside, bump a counter, exit with the given code.
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [dir, code = "0"] = process.argv.slice(2);
const occupied = join(dir, "occupied");
if (existsSync(occupied)) {
  process.stderr.write("overlap\n");
  process.exit(99);
}
writeFileSync(occupied, String(process.pid));
const counter = join(dir, "counter");
const value = Number(readFileSync(counter, "utf8"));
const until = Date.now() + 20;
while (Date.now() < until) {
  // hold the section a moment so that overlapping runs would be seen
}
writeFileSync(counter, String(value + 1));
rmSync(occupied);
process.exit(Number(code));
