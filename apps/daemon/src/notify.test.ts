import { createServer } from "node:http";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createNotifier } from "./notify.ts";

describe("createNotifier", () => {
  it("POSTs JSON, retries with backoff after a failure, and never makes the caller wait", async () => {
    const bodies: unknown[] = [];
    let calls = 0;
    const server = createServer((req, res) => {
      let text = "";
      req.on("data", (c: Buffer) => (text += c.toString()));
      req.on("end", () => {
        calls += 1;
        if (calls === 1) {
          res.writeHead(503).end();
          return;
        }
        bodies.push(JSON.parse(text));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    const notifier = createNotifier({
      url: `http://127.0.0.1:${port}/hook`,
      logger: pino({ level: "silent" }),
      host: "gpu-host",
      baseDelayMs: 20,
    });
    notifier.send("promotion", { run_id: "r-1", path: "/p.json" });
    // send returns before anything is delivered: a run never waits for the webhook.
    expect(calls).toBe(0);
    await notifier.flush(5000);
    expect(calls).toBe(2);
    expect(bodies).toEqual([expect.objectContaining({ kind: "promotion", host: "gpu-host", run_id: "r-1", path: "/p.json" })]);
    await new Promise((r) => server.close(r));
  });

  it("does nothing without KLR_NOTIFY_URL", async () => {
    const notifier = createNotifier({ url: undefined, logger: pino({ level: "silent" }), host: "h" });
    notifier.send("fault", { reason: "x" });
    await notifier.flush(10);
  });
});
