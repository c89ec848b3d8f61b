// The simulated vLLM (@gpu-canary/vllm-sim) for the load benchmark, in its own process so the
// benchmark's CPU counts the client alone. Its KV cache holds every request (no preemption) and
// its steps take no more than the event loop's shortest timer, so the generator and the sim's own
// HTTP and stepping work are measured, not a model's latency. Prints its URL, then serves.
import { buildSimVllm } from "@gpu-canary/vllm-sim";

const app = buildSimVllm({
  model: "bench",
  gpuMemoryUtilization: 0.9,
  kvCacheTokens: 10_000_000,
  // 0: a step waits setTimeout(0), about a millisecond, whatever the batch
  tokenLatencyMs: 0,
  prefillMsPer1kTokens: 0,
  loadSlowdown: 0,
  maxNumSeqs: 1024,
  maxNumBatchedTokens: 1_000_000,
});
const url = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${url}\n`);
const stop = () => void app.close().then(() => process.exit(0));
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
