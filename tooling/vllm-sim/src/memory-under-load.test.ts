import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "./free-port.ts";
import { createHost, h200, readHost } from "./host-state.ts";
import { SIM_VLLM } from "./index.ts";
import { kvCacheTokensFor } from "./kv-capacity.ts";
import { createSimSite, writeModelFolder } from "./sim-site.ts";
import { buildSimVllm } from "./vllm-server.ts";

const apps: { close: () => Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

async function listen(options: Partial<Parameters<typeof buildSimVllm>[0]>) {
  const app = buildSimVllm({ model: "m", gpuMemoryUtilization: 0.5, tokenLatencyMs: 1, ...options });
  apps.push(app);
  return app.listen({ port: 0, host: "127.0.0.1" });
}

/** One sample's value from an exposition: `name{...labels containing `having`}`. */
function sample(text: string, name: string, having = ""): number | undefined {
  const line = text.split("\n").find((l) => (l.startsWith(`${name}{`) || l.startsWith(`${name} `)) && l.includes(having));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(" ") + 1));
}

const metrics = async (url: string) => (await fetch(`${url}/metrics`)).text();
/** A prompt of about `tokens` tokens by the sim's 1.3 tokens per word. */
const promptOf = (tokens: number) => Array.from({ length: Math.round(tokens / 1.3) }, () => "word").join(" ");

interface Answer {
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  choices: { finish_reason: string }[];
  message?: string;
}

async function complete(url: string, body: Record<string, unknown>) {
  const response = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "m", ...body }),
  });
  return { status: response.status, body: (await response.json()) as Answer };
}

/** 8 concurrent 2000-token requests while /metrics is polled: what the gauges showed. */
async function eightLong(url: string) {
  const seen = { running: 0, waiting: 0, usage: 0 };
  let polling = true;
  const poll = (async () => {
    while (polling) {
      const text = await metrics(url);
      seen.running = Math.max(seen.running, sample(text, "vllm:num_requests_running") ?? 0);
      seen.waiting = Math.max(seen.waiting, sample(text, "vllm:num_requests_waiting") ?? 0);
      seen.usage = Math.max(seen.usage, sample(text, "vllm:kv_cache_usage_perc") ?? 0);
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const answers = await Promise.all(
    Array.from({ length: 8 }, () => complete(url, { prompt: promptOf(2000), max_tokens: 300, ignore_eos: true })),
  );
  polling = false;
  await poll;
  return { answers, seen, after: await metrics(url) };
}

describe("the simulated vLLM's memory under load", () => {
  it("derives its KV capacity from the utilization by the memory model's arithmetic: a higher util holds more", async () => {
    const model = await writeModelFolder(join(await testdir(), "model"));
    const at = (util: number) =>
      kvCacheTokensFor({ cudaTotalMib: 143148, gpuName: "NVIDIA H200", util, modelDir: model, version: "0.11.0" });
    // Llama-3.1-8B on an H200: 128 KiB per token; at 0.5, 69.9 GiB − 14.96 GiB weights − 4.77 GiB sampler warm-up − 0.13 GiB
    // (the memory model's predictMemory gives the same kvTokens for vLLM ≥ 0.9.1).
    expect(at(0.5)).toBe(409_904);
    expect(at(0.15)).toBeLessThan(16_000);
    expect(at(0.15)).toBeGreaterThan(0);
    expect(at(0.6) ?? 0).toBeGreaterThan(at(0.5) ?? 0);
    expect(at(0.1)).toBe(0);
    expect(kvCacheTokensFor({ cudaTotalMib: 143148, gpuName: "H200", util: 0.5, modelDir: "/nonexistent", version: "0.11.0" })).toBeNull();
  });

  it("holds 8 concurrent 2000-token requests without preempting when its cache has room, and shows its usage rise and fall", async () => {
    const url = await listen({ kvCacheTokens: 409_872 });
    const { answers, seen, after } = await eightLong(url);
    for (const a of answers) {
      expect(a.status).toBe(200);
      // 1538 words × 1.3 = 1999.4 tokens.
      expect(a.body.usage).toEqual({ prompt_tokens: 1999, completion_tokens: 300, total_tokens: 2299 });
    }
    expect(sample(after, "vllm:num_preemptions_total")).toBe(0);
    // All eight run in one batch (a request arriving mid-step waits for the next one, as in vLLM).
    expect(seen.running).toBe(8);
    expect(seen.usage).toBeGreaterThan(0.03);
    expect(sample(after, "vllm:kv_cache_usage_perc")).toBe(0);
    expect(sample(after, "vllm:num_requests_running")).toBe(0);
  });

  it("preempts and counts it when a smaller utilization's cache cannot hold them, and still serves every request", async () => {
    const model = await writeModelFolder(join(await testdir(), "model"));
    const small = kvCacheTokensFor({ cudaTotalMib: 143148, gpuName: "NVIDIA H200", util: 0.15, modelDir: model, version: "0.11.0" }) ?? 0;
    const url = await listen({ kvCacheTokens: small });
    const { answers, seen, after } = await eightLong(url);
    // 9088 tokens hold four 2000-token prompts (the other four wait); four answers of 300 tokens outgrow it (4 × 2300).
    expect(small).toBe(9088);
    for (const a of answers) expect(a.body.usage.completion_tokens).toBe(300);
    expect(sample(after, "vllm:num_preemptions_total", 'model_name="m"')).toBeGreaterThan(0);
    // A fifth may hold a first prompt chunk for a step, when it arrived with the others.
    expect(seen.running).toBeLessThanOrEqual(5);
    expect(seen.waiting).toBeGreaterThanOrEqual(4);
    expect(seen.usage).toBeGreaterThan(0.9);
    expect(sample(after, "vllm:kv_cache_usage_perc")).toBe(0);
  });

  it("slows each token with the number of requests running", async () => {
    const url = await listen({ tokenLatencyMs: 4, loadSlowdown: 0.5 });
    const itl = async () => {
      const text = await metrics(url);
      return [sample(text, "vllm:inter_token_latency_seconds_sum") ?? 0, sample(text, "vllm:inter_token_latency_seconds_count") ?? 0];
    };
    await complete(url, { prompt: "hi", max_tokens: 20 });
    const [aloneSum, aloneCount] = await itl();
    await Promise.all(Array.from({ length: 8 }, () => complete(url, { prompt: "hi", max_tokens: 20 })));
    const [sum, count] = await itl();
    const alone = (aloneSum ?? 0) / (aloneCount ?? 1);
    const loaded = ((sum ?? 0) - (aloneSum ?? 0)) / ((count ?? 0) - (aloneCount ?? 0));
    // 4 ms alone, 4 × (1 + 0.5 × 7) = 18 ms with eight; timers on a busy machine stretch both.
    expect(loaded).toBeGreaterThan(alone * 2);
  });

  it("answers usage, honours max_tokens, min_tokens and ignore_eos, and refuses a request past max_model_len with vLLM's text", async () => {
    const url = await listen({ eosAfterTokens: 3, maxModelLen: 4096 });
    const natural = await complete(url, { prompt: promptOf(100), max_tokens: 10 });
    expect(natural.body.usage).toEqual({ prompt_tokens: 100, completion_tokens: 3, total_tokens: 103 });
    expect(natural.body.choices[0]?.finish_reason).toBe("stop");
    const held = await complete(url, { prompt: promptOf(100), max_tokens: 10, min_tokens: 6 });
    expect(held.body.usage.completion_tokens).toBe(6);
    const ignored = await complete(url, { prompt: [1, 2, 3, 4, 5], max_tokens: 10, ignore_eos: true });
    expect(ignored.body.usage).toEqual({ prompt_tokens: 5, completion_tokens: 10, total_tokens: 15 });
    expect(ignored.body.choices[0]?.finish_reason).toBe("length");
    const chat = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "m",
        messages: [{ role: "user", content: "one two three four five six seven eight nine ten" }],
        max_tokens: 2,
      }),
    });
    expect(((await chat.json()) as { usage: unknown }).usage).toEqual({ prompt_tokens: 13, completion_tokens: 2, total_tokens: 15 });
    const tooLong = await complete(url, { prompt: promptOf(4000), max_tokens: 200 });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.message).toBe(
      "This model's maximum context length is 4096 tokens. However, you requested 4200 tokens (4000 in the messages, 200 in the completion). Please reduce the length of the messages or completion.",
    );
  });

  it("ends a stream with the usage chunk when stream_options.include_usage is set, as vLLM and OpenAI do", async () => {
    const url = await listen({});
    const stream = async (includeUsage: boolean) => {
      const response = await fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "m",
          messages: [{ role: "user", content: "a b c d e f g h i j" }],
          max_tokens: 3,
          stream: true,
          ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
        }),
      });
      const events = (await response.text()).split("\n\n").filter(Boolean);
      expect(events.at(-1)).toBe("data: [DONE]");
      return events.slice(0, -1).map((e) => JSON.parse(e.slice("data: ".length)) as { choices: unknown[]; usage?: unknown });
    };
    const withUsage = await stream(true);
    expect(withUsage.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 13, completion_tokens: 3, total_tokens: 16 } });
    expect(withUsage.length).toBe(5);
    expect((await stream(false)).some((c) => c.usage !== undefined)).toBe(false);
  });

  it("names the KV usage and per-token histograms as the vLLM version it plays: old names before 0.10, both in 0.10, new from 0.11", async () => {
    const names = async (version: string) => {
      const text = await metrics(await listen({ version }));
      return [
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "vllm:inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds",
      ].filter((n) => text.includes(`# TYPE ${n} `));
    };
    expect(await names("0.9.2")).toEqual(["vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds"]);
    expect(await names("0.10.1")).toEqual([
      "vllm:kv_cache_usage_perc",
      "vllm:gpu_cache_usage_perc",
      "vllm:inter_token_latency_seconds",
      "vllm:time_per_output_token_seconds",
    ]);
    expect(await names("0.11.0")).toEqual(["vllm:kv_cache_usage_perc", "vllm:inter_token_latency_seconds"]);
  });

  it("passes `promtool check metrics` before and after serving, but for the colons in vLLM's own names", async (context) => {
    if (spawnSync("promtool", ["--version"]).status !== 0)
      context.skip("promtool is not installed: `apt-get install prometheus` (Debian) provides it; .ci/run installs it");
    const url = await listen({ version: "0.10.1", kvCacheTokens: 3000 });
    const lint = async () => {
      const check = spawnSync("promtool", ["check", "metrics"], { input: await metrics(url), encoding: "utf8" });
      // vLLM's names use the colon Prometheus keeps for recording rules: that one lint is vLLM's, not ours.
      const problems = `${check.stdout}${check.stderr}`
        .split("\n")
        .filter((line) => line.trim() !== "" && !line.endsWith("metric names should not contain ':'"));
      return { status: check.status, problems };
    };
    // 3 is promtool's exit code for lint problems only (1: the text does not parse).
    expect(await lint()).toEqual({ status: 3, problems: [] });
    await Promise.all(Array.from({ length: 3 }, () => complete(url, { prompt: promptOf(1500), max_tokens: 5 })));
    expect(await lint()).toEqual({ status: 3, problems: [] });
  });
});

describe("the simulated vLLM process under load", () => {
  async function start(args: string[], env: Record<string, string>) {
    const port = freePort();
    const child = spawn(SIM_VLLM, ["--port", String(port), ...args], {
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr.on("data", (c: Buffer) => (err += c.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    const deadline = Date.now() + 30_000;
    while (!out.includes("Application startup complete") && child.exitCode === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
    return { url: `http://127.0.0.1:${port}`, child, exited, out: () => out, err: () => err };
  }

  it("takes its KV capacity from the host's GPU, its utilization and the model folder, and says it as vLLM does", async () => {
    const dir = await testdir();
    const host = join(dir, "host.json");
    await createHost(host, { gpus: [h200(0)] });
    const model = await writeModelFolder(join(dir, "model"));
    const vllm = await start(["--model", model, "--gpu-memory-utilization", "0.5"], {
      GPU_CANARY_SIM_HOST: host,
      CUDA_VISIBLE_DEVICES: "0",
    });
    try {
      expect(vllm.out()).toContain("GPU KV cache size: 409,904 tokens");
      expect(await metrics(vllm.url)).toContain('num_gpu_blocks="25619"');
    } finally {
      vllm.child.kill("SIGTERM");
      await vllm.exited;
    }
  }, 40_000);

  it("dies with PyTorch's CUDA out-of-memory text once KV usage passes SIM_OOM_AT_USAGE", async () => {
    const vllm = await start(["--model", "m"], { SIM_OOM_AT_USAGE: "0.5", SIM_KV_CACHE_TOKENS: "1000", SIM_TOKEN_LATENCY_MS: "1" });
    const small = await complete(vllm.url, { prompt: promptOf(100), max_tokens: 2 });
    expect(small.status).toBe(200);
    await complete(vllm.url, { prompt: promptOf(600), max_tokens: 2 }).catch(() => undefined);
    expect(await vllm.exited).toBe(1);
    expect(vllm.err()).toMatch(/^torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate /m);
  }, 40_000);

  it("on SIGTERM gives an open request 5 s to finish, then goes and frees its GPU memory (a request must not keep it alive)", async () => {
    const dir = await testdir();
    const host = join(dir, "host.json");
    await createHost(host, { gpus: [h200(0)] });
    const vllm = await start(["--model", "m", "--gpu-memory-utilization", "0.3"], {
      GPU_CANARY_SIM_HOST: host,
      CUDA_VISIBLE_DEVICES: "0",
      SIM_TOKEN_LATENCY_MS: "100",
    });
    // 600 tokens at 100 ms: a minute, far past the grace
    const open = complete(vllm.url, { prompt: "hello", max_tokens: 600, ignore_eos: true }).catch(() => null);
    await new Promise((r) => setTimeout(r, 300));
    const stopped = Date.now();
    vllm.child.kill("SIGTERM");
    expect(await vllm.exited).toBe(0);
    expect(Date.now() - stopped).toBeLessThan(15_000);
    expect(readHost(host).processes.filter((p) => p.pid === vllm.child.pid)).toEqual([]);
    await open;
  }, 40_000);

  it("refuses a knob that is not a number in range, naming it", async () => {
    const vllm = await start(["--model", "m"], { SIM_OOM_AT_USAGE: "95%" });
    expect(await vllm.exited).toBe(2);
    expect(vllm.err()).toBe("SIM_OOM_AT_USAGE=95% is not a number from 0 to 1: fix or unset it\n");
  }, 40_000);
});

describe("createSimSite's production traffic", () => {
  it("sends production the traffic it is given, so its histograms and running gauge show the load's shape", async () => {
    const site = await createSimSite(await testdir(), {
      gpus: 1,
      tokenLatencyMs: 1,
      traffic: { concurrency: 8, promptTokens: 2000, outputTokens: 20, requests: 16, background: true },
    });
    try {
      await site.startProduction();
      const url = `http://127.0.0.1:${site.productionPort}`;
      const text = await metrics(url);
      expect(sample(text, "vllm:request_prompt_tokens_count")).toBeGreaterThanOrEqual(16);
      // Every prompt is about 2000 tokens: none at or below 1000, all at or below 2000.
      expect(sample(text, "vllm:request_prompt_tokens_bucket", 'le="1000.0"')).toBe(0);
      expect(sample(text, "vllm:request_prompt_tokens_bucket", 'le="2000.0"')).toBe(sample(text, "vllm:request_prompt_tokens_count"));
      expect(sample(text, "vllm:request_generation_tokens_bucket", 'le="10.0"')).toBe(0);
      expect(sample(text, "vllm:request_generation_tokens_bucket", 'le="20.0"')).toBe(sample(text, "vllm:request_generation_tokens_count"));
      expect(sample(text, "vllm:time_to_first_token_seconds_count")).toBeGreaterThanOrEqual(16);
      expect(sample(text, "vllm:inter_token_latency_seconds_count")).toBeGreaterThanOrEqual(16 * 19);
      // The background traffic keeps eight in flight.
      let running = 0;
      for (let i = 0; i < 100 && running < 8; i += 1) {
        running = Math.max(running, sample(await metrics(url), "vllm:num_requests_running") ?? 0);
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(running).toBe(8);
      await site.stopTraffic();
      expect(sample(await metrics(url), "vllm:num_requests_running")).toBe(0);
    } finally {
      await site.cleanup();
    }
  }, 60_000);
});
