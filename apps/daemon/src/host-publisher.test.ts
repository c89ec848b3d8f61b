import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import { FleetDbUnreachableError } from "@gpu-canary/fleet-store";
import { testdir } from "@gpu-canary/testing";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { hostPublisher } from "./host-publisher.ts";

/** A logger whose lines the test reads back. */
function capturedLogger() {
  const lines: { level: number; msg: string; file?: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
      done();
    },
  });
  return { logger: pino({ level: "info" }, stream), lines };
}

describe("hostPublisher", () => {
  it("warns once while publishing fails, says when it works again, names an unreadable promotion file once, and publishes the intents", async () => {
    const home = await testdir();
    const config = requireConfig(loadConfig({ env: { KLR_HOME: home, KLR_HOST_ID: "gpu-a" }, homeDir: home })).config;
    const layout = layoutFor(config);
    await mkdir(layout.promotionsDir, { recursive: true });
    await writeFile(join(layout.promotionsDir, "r-9.json"), "{ cut short");
    const intent = {
      kind: "oom_kv_cache",
      subsystem: "gpu_allocation",
      evidence: "CUDA out of memory",
      id: "i-1",
      created_at: "2026-11-28T03:00:00.000Z",
    };
    await mkdir(layout.intentsDir, { recursive: true });
    await writeFile(join(layout.intentsDir, "i-1.json"), JSON.stringify(intent));
    const published: unknown[] = [];
    let away = true;
    const store = {
      publishHost: (_pool: unknown, options: unknown) => {
        if (away) return Promise.reject(new FleetDbUnreachableError("db:5432/fleet", "connect ECONNREFUSED"));
        published.push(options);
        return Promise.resolve({ promotions: { written: 0, otherHost: [] }, intents: { written: 0, otherHost: [] }, lastRun: null });
      },
      hostAppliedOf: (a: unknown) => a,
    };
    const { logger, lines } = capturedLogger();
    const publish = hostPublisher({
      store: store as unknown as Parameters<typeof hostPublisher>[0]["store"],
      pool: null as unknown as Parameters<typeof hostPublisher>[0]["pool"],
      config,
      layout,
      logger,
      now: () => new Date(),
    });
    await publish();
    await publish();
    away = false;
    await publish();
    await publish();
    const said = lines.map((l) => l.msg);
    expect(said.filter((m) => m.includes("could not be published"))).toHaveLength(1);
    expect(said.filter((m) => m.includes("published to the fleet database again"))).toHaveLength(1);
    expect(lines.filter((l) => l.msg.startsWith("not a promotion"))).toEqual([
      expect.objectContaining({ file: join(layout.promotionsDir, "r-9.json") }),
    ]);
    expect(published).toEqual([
      { hostId: "gpu-a", applied: null, appliedError: null, promotions: [], intents: [{ ...intent, state: "pending" }] },
      { hostId: "gpu-a", applied: null, appliedError: null, promotions: [], intents: [{ ...intent, state: "pending" }] },
    ]);
  });
});
