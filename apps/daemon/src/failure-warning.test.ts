import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { warnOnceWhileFailing } from "./failure-warning.ts";

function capturedLogger() {
  const lines: { level: number; msg: string; err?: string; copied?: number }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString("utf8")) as (typeof lines)[number]);
      done();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

describe("warnOnceWhileFailing", () => {
  it("warns once for a run of failures, says when it works again, and warns again at the next failure", () => {
    const { logger, lines } = capturedLogger();
    const copy = warnOnceWhileFailing(logger, { failing: "could not copy", again: "copies again" });
    copy.worked();
    expect(copy.failed(new Error("database away"))).toBe(true);
    expect(copy.failed(new Error("database away"))).toBe(false);
    expect(copy.failed(new Error("still away"))).toBe(false);
    copy.worked({ copied: 3 });
    copy.worked();
    expect(copy.failed(new Error("away again"))).toBe(true);
    expect(lines.map((l) => [l.level, l.msg, l.err ?? l.copied])).toEqual([
      [40, "could not copy", "database away"],
      [30, "copies again", 3],
      [40, "could not copy", "away again"],
    ]);
  });
});
