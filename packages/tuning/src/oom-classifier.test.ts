import { describe, expect, it } from "vitest";
import { type OomKind, classifyLine, createOomDetector, recordMessage } from "./oom-classifier.ts";

// Real lines from public threads; each names its source.
const OOM: [OomKind, string, string][] = [
  [
    "oom_startup_free_memory",
    "[2026-02-24T20:21:58Z] (EngineCore_DP0 pid=6940) ValueError: Free memory on device cuda:1 (19.77/22.05 GiB) on startup is less than desired GPU memory utilization (0.9, 19.84 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.",
    "pytorch/pytorch#175666",
  ],
  [
    "oom_startup_free_memory",
    "ValueError: Free memory on device (31.44/47.38 GiB) on startup is less than desired GPU memory utilization (0.95, 45.01 GiB). Decrease GPU memory utilization or reduce GPU memory used by other processes.",
    "vllm-project/vllm#20305",
  ],
  [
    "oom_kv_cache",
    "vllm-1  | ERROR 11-18 18:07:28 engine.py:366] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.",
    "vllm-project/vllm#10439 (docker compose prefix)",
  ],
  [
    "oom_max_model_len",
    "The model's max seq len (29000) is larger than the maximum number of tokens that can be stored in KV cache (23648). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
    "vllm-project/vllm#10517",
  ],
  [
    "oom_max_model_len",
    "ERROR 04-05 01:12:55 [core.py:390] ValueError: To serve at least one request with the models's max seq len (1048576), (24.00 GiB KV cache is needed, which is larger than the available KV cache memory (9.97 GiB). Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.",
    "vllm-project/vllm#16118",
  ],
  [
    "oom_runtime",
    "(VllmWorker rank=7 pid=10948) ERROR 03-16 06:12:38 [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.",
    "vllm-project/vllm#14452",
  ],
  [
    "oom_runtime",
    "(VllmWorker rank=1 pid=2978) ERROR 03-19 07:27:53 [multiproc_executor.py:375] torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.74 GiB. GPU 1 has a total capacity of 23.57 GiB of which 605.88 MiB is free. Process 133288 has 22.97 GiB memory in use.",
    "NVIDIA/nccl#1645 (a vLLM 0.8.0 log)",
  ],
  [
    "oom_runtime",
    "Nov 28 03:12:09 gpu-host vllm[1234]: \u001b[1;31mtorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.\u001b[0m",
    "journald prefix and ANSI colours around PyTorch's allocator text",
  ],
];

const NOT_OOM: [string, string][] = [
  ["(EngineCore_DP0 pid=1133552) INFO 10-03 16:22:17 [gpu_worker.py:298] Available KV cache memory: 6.51 GiB", "LMCache/LMCache#1739"],
  ["(EngineCore_DP0 pid=1133552) INFO 10-03 16:22:17 [kv_cache_utils.py:864] GPU KV cache size: 42,656 tokens", "LMCache/LMCache#1739"],
  ["INFO 10-03 16:22:17 [kv_cache_utils.py:868] Maximum concurrency for 32,768 tokens per request: 1.30x", "LMCache/LMCache#1739"],
  ["INFO 02-26 09:54:05 worker.py:267] Memory profiling takes 3.25 seconds", "vllm-project/vllm#13882"],
  [
    "INFO 02-26 09:54:05 worker.py:267] model weights take 5.20GiB; non_torch_memory takes 0.03GiB; PyTorch activation peak memory takes 1.42GiB; the rest of the memory reserved for KV Cache is -1.05GiB.",
    "vllm-project/vllm#13882",
  ],
  [
    "(Worker_TP1 pid=148) INFO 05-14 00:04:16 [gpu_model_runner.py:6143] Estimated CUDA graph memory: 0.17 GiB total",
    "noonghunna/club-3090#127",
  ],
  [
    "INFO 05-14 00:04:17 [gpu_worker.py:475] CUDA graph memory profiling is enabled (default since v0.21.0). The current --gpu-memory-utilization=0.9200 is equivalent to --gpu-memory-utilization=0.9129 without CUDA graph memory profiling.",
    "noonghunna/club-3090#127",
  ],
  [
    "INFO model_runner.py] Capturing the model for CUDA graphs. This may lead to unexpected consequences if the model is not static. To run the model in eager mode, set 'enforce_eager=True' or use '--enforce-eager' in the CLI. CUDA graphs can take additional 1~3 GiB memory per GPU. If you are running out of memory, consider decreasing `gpu_memory_utilization` or enforcing eager mode.",
    "vLLM V0 model_runner.py's capture notice (predictive-memory.md §1.3)",
  ],
  [
    'ERROR 11-18 18:07:28 engine.py:366]     raise ValueError("No available memory for the cache blocks. "',
    "vllm-project/vllm#10439 (the traceback's source line)",
  ],
  ["INFO 02-26 09:54:02 model_runner.py:1115] Loading model weights took 5.2032 GB", "vllm-project/vllm#13882"],
];

describe("classifyLine", () => {
  it.each(OOM)("%s: %s (%s)", (kind, line) => {
    expect(classifyLine(line)).toBe(kind);
  });

  it.each(NOT_OOM)("not a failure: %s (%s)", (line) => {
    expect(classifyLine(line)).toBeNull();
  });

  // vLLM's request logger (shape: vllm-project/vllm#9023) with a user's prompt, or a logged output,
  // quoting each failure text: a user of production's API must not create an intent.
  it.each(OOM)("not from a logged request or response: %s", (_kind, line) => {
    const said = line.replace(/^.*?\] /, "");
    expect(
      classifyLine(
        `INFO 10-01 18:43:27 logger.py:36] Received request cmpl-c52dbd9a-0: prompt: 'why does ${said}?', params: SamplingParams(n=1)`,
      ),
    ).toBeNull();
    expect(
      classifyLine(
        `(APIServer pid=1) INFO 10-01 18:43:29 [logger.py:71] Generated response chatcmpl-9a: output: '${said}', finish_reason: stop`,
      ),
    ).toBeNull();
  });

  // Any other record of vLLM's that quotes a client's words: the ignored-fields warning names the
  // request's unknown keys (shape: vllm-project/vllm#40329, protocol.py), which a client chooses.
  // Only a message that begins with the failure is vLLM's: neither the request logger's words nor
  // "prompt:" need be there for a quote to be a quote.
  it.each(OOM)("not from a client's words quoted in another record: %s", (_kind, line) => {
    const said = line.replace(/^.*?\] /, "");
    expect(
      classifyLine(
        `Feb 21 16:58:46 gpu-host env[3210]: (APIServer pid=3210) WARNING 02-21 16:58:46 [protocol.py:53] The following fields were present in the request but ignored: {'${said}'}`,
      ),
    ).toBeNull();
  });

  // The same failures as other carriers write them. Formats: rsyslog's default RFC 3339 template and
  // `journalctl -o short-iso` / `-o short-precise` (systemd's journalctl(1)), the CRI log-file line
  // Kubernetes writes (`<time> <stream> <F|P> <message>`), Ray's worker prefix `(Name pid=N, ip=…)`.
  it.each([
    [
      "oom_kv_cache",
      "2026-12-02T03:12:09.123456+00:00 gpu-host vllm[1234]: (EngineCore_DP0 pid=6940) ERROR 12-02 03:12:09 [core.py:390] ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when initializing the engine.",
    ],
    ["oom_kv_cache", "2026-12-02T03:12:09+0000 gpu-host vllm[1234]: ValueError: No available memory for the cache blocks."],
    ["oom_runtime", "Dec 02 03:12:09.123456 gpu-host vllm[1234]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."],
    [
      "oom_runtime",
      "2026-12-02T03:12:09.123456789Z stderr F RuntimeError: CUDA out of memory occurred when warming up sampler with 256 dummy requests.",
    ],
    [
      "oom_runtime",
      "(RayWorkerWrapper pid=5123, ip=10.0.0.2) ERROR 12-02 03:12:09 [worker_base.py:620] torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB.",
    ],
    ["oom_kv_cache", "(pid=5123) ValueError: No available memory for the cache blocks."],
  ] as const)("%s as another carrier writes it: %s", (kind, line) => {
    expect(classifyLine(line)).toBe(kind);
  });

  it("not from an exception a client can raise: a chat template's own error quoting a failure", () => {
    expect(
      classifyLine(
        "(APIServer pid=1) ERROR 12-02 03:12:09 [serving_chat.py:222] jinja2.exceptions.TemplateError: No available memory for the cache blocks.",
      ),
    ).toBeNull();
  });

  it("reads the message behind every prefix its carrier and vLLM's logger put before it", () => {
    expect(
      recordMessage("vllm-1  | 2026-02-24T20:21:58.123Z (EngineCore_DP0 pid=6940) ERROR 04-05 01:12:55 [core.py:390] ValueError: x"),
    ).toBe("ValueError: x");
    expect(recordMessage("Nov 28 03:12:09 gpu-host vllm[1234]: INFO 11-28 03:12:09 engine.py:366] Received request r: prompt: 'y'")).toBe(
      "Received request r: prompt: 'y'",
    );
  });

  it("ignores empty, binary and absurdly long lines", () => {
    expect(classifyLine("")).toBeNull();
    expect(classifyLine("\u0000\u0001\u0002")).toBeNull();
    expect(classifyLine(`No available memory for the cache blocks ${"x".repeat(10_000)}`)).toBeNull();
  });
});

describe("createOomDetector", () => {
  it("reports one event per failure, not one per traceback line or worker", () => {
    let t = Date.parse("2026-11-28T03:00:00Z");
    const detector = createOomDetector({ quietMs: 30_000, now: () => new Date(t) });
    const traceback = [
      "(VllmWorker rank=0 pid=1) ERROR [multiproc_executor.py:375] WorkerProc hit an exception: %s",
      "(VllmWorker rank=0 pid=1) ERROR [multiproc_executor.py:375]     raise RuntimeError(",
      "(VllmWorker rank=0 pid=1) ERROR [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests.",
      "(VllmWorker rank=1 pid=2) ERROR [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests.",
      "ERROR [core.py:340] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests.",
    ];
    const events = traceback.map((l) => detector.feed(l)).filter((e) => e !== null);
    expect(events).toHaveLength(1);
    expect(events[0]?.kind).toBe("oom_runtime");
    // Another kind is another failure; the same kind after the quiet time is a new one.
    expect(detector.feed("ValueError: No available memory for the cache blocks.")?.kind).toBe("oom_kv_cache");
    t += 31_000;
    expect(detector.feed(traceback[2] ?? "")?.kind).toBe("oom_runtime");
  });
});

// vLLM's memory account after profiling: the message of vllm/v1/worker/gpu_worker.py
// `compile_or_warm_up_model` (vllm-project/vllm@35d5cda; INFO in 0.11, DEBUG later), with a logged
// prefix. The flag it suggests, `--kv-cache-memory`, does not exist: vLLM's CLI has only
// `--kv-cache-memory-bytes` (vllm-project/vllm#52600).
const ACCOUNT =
  "(EngineCore_DP0 pid=9577) DEBUG 02-03 04:44:01 [v1/worker/gpu_worker.py:598] Free memory on device (47.03/47.37 GiB) on startup. Desired GPU memory utilization is (0.9, 42.64 GiB). Actual usage is 15.27 GiB for weight, 1.4 GiB for peak activation, 0.03 GiB for non-torch memory, and 0.54 GiB for CUDAGraph memory. Replace gpu_memory_utilization config with `--kv-cache-memory=22976439705` (21.4 GiB) to fit into requested memory, or `--kv-cache-memory=27692338176` (25.79 GiB) to fully utilize gpu memory. Current kv cache memory in use is 21.55 GiB.";
// The failure that follows it: the sampler's warm-up comes right after the account (vllm-project/vllm#14452).
const SAMPLER_OOM =
  "(VllmWorker rank=0 pid=10948) ERROR 03-16 06:12:38 [multiproc_executor.py:375] RuntimeError: CUDA out of memory occurred when warming up sampler with 1024 dummy requests. Please try lowering `max_num_seqs` or `gpu_memory_utilization` when initializing the engine.";

describe("vLLM's memory account and its misnamed flag", () => {
  it("goes with the failure of the same start, naming --kv-cache-memory-bytes, never the name vLLM suggests", () => {
    // No failure itself, though it starts like the startup refusal.
    expect(classifyLine(ACCOUNT)).toBeNull();
    let t = Date.parse("2026-11-28T03:00:00Z");
    const detector = createOomDetector({ now: () => new Date(t) });
    expect(detector.feed(ACCOUNT)).toBeNull();
    t += 20_000;
    const event = detector.feed(SAMPLER_OOM);
    expect(event?.kind).toBe("oom_runtime");
    expect(event?.account).toContain("with `--kv-cache-memory-bytes=22976439705` (21.4 GiB) to fit into requested memory");
    expect(event?.account).toContain("`--kv-cache-memory-bytes=27692338176`");
    expect(event?.account).not.toMatch(/--kv-cache-memory(?!-bytes)/);
    // It belonged to that start: a failure of a later start does not inherit it.
    t += 60_000;
    expect(detector.feed("ValueError: No available memory for the cache blocks.")?.account).toBeNull();
  });

  it("is not taken from a logged prompt, nor from an earlier start", () => {
    let t = Date.parse("2026-11-28T03:00:00Z");
    const detector = createOomDetector({ now: () => new Date(t) });
    detector.feed(`INFO 10-01 18:43:27 logger.py:36] Received request cmpl-1: prompt: '${ACCOUNT}', params: SamplingParams(n=1)`);
    expect(detector.feed(SAMPLER_OOM)?.account).toBeNull();
    detector.feed(ACCOUNT);
    t += 11 * 60_000;
    expect(detector.feed("ValueError: No available memory for the cache blocks.")?.account).toBeNull();
  });

  it("names the real flag wherever a failure's own line carries vLLM's suggestion", () => {
    const detector = createOomDetector();
    const event = detector.feed(`${SAMPLER_OOM} Or set \`--kv-cache-memory=8589934592\` instead.`);
    expect(event?.line).toContain("`--kv-cache-memory-bytes=8589934592`");
    expect(event?.line).not.toMatch(/--kv-cache-memory(?!-bytes)/);
  });
});
