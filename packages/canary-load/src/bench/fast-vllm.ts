// A minimal, fast stand-in for vLLM's streaming /v1/completions, for the load benchmark: it
// answers at once, so what limits the rate is the clients and this loop, not a model. Run in
// its own process so the benchmark's CPU counts the client alone. Prints its URL, then serves.
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";

const MODEL = "bench";
const chunk = (text: string) =>
  `data: ${JSON.stringify({ id: "cmpl-b", object: "text_completion", model: MODEL, choices: [{ index: 0, text, logprobs: null, finish_reason: null }], usage: null })}\n\n`;
const TOKEN = chunk(" tok");

const server = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/v1/models") {
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ object: "list", data: [{ id: MODEL }] }));
    return;
  }
  let size = 0;
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (c: string) => {
    size += c.length;
    if (size < 65_536) body += c;
  });
  req.on("end", () => {
    let out = 16;
    try {
      out = (JSON.parse(body) as { max_tokens?: number }).max_tokens ?? 16;
    } catch {
      // a client that sends no JSON gets the default length
    }
    res.writeHead(200, { "content-type": "text/event-stream; charset=utf-8" });
    for (let i = 0; i < out; i += 1) res.write(TOKEN);
    res.write(
      `data: ${JSON.stringify({ id: "cmpl-b", object: "text_completion", model: MODEL, choices: [], usage: { prompt_tokens: 16, completion_tokens: out, total_tokens: 16 + out } })}\n\n`,
    );
    res.end("data: [DONE]\n\n");
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`http://127.0.0.1:${(server.address() as AddressInfo).port}\n`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
