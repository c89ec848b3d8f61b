/**
 * vLLM's startup log (vllm/v1/worker/gpu_worker.py, `compile_or_warm_up_model`) tells an operator
 * to "Replace gpu_memory_utilization config with `--kv-cache-memory=N`", but its command line
 * knows only `--kv-cache-memory-bytes` (vllm/engine/arg_utils.py; vllm-project/vllm#52600, #56002):
 * an operator who copies the suggested name gets "unrecognized arguments". Whatever gpu-canary
 * passes on from a vLLM log (an intent's evidence, a canary's death line, a reason) names the real flag.
 */
const GHOST_KV_FLAG = /--kv-cache-memory(?![-\w])/g;

/** The flag that sizes vLLM's KV cache in bytes; vLLM then ignores --gpu-memory-utilization (vllm-project/vllm#21489). */
export const KV_CACHE_MEMORY_FLAG = "--kv-cache-memory-bytes";

/** The text with vLLM's suggested `--kv-cache-memory` turned into the flag vLLM accepts. */
export function withRealVllmFlags(text: string): string {
  return text.replace(GHOST_KV_FLAG, KV_CACHE_MEMORY_FLAG);
}

/** Whether vLLM flags set the KV cache's size in bytes (either spelling): util then does not size it. */
export function setsKvCacheBytes(args: readonly string[]): boolean {
  return args.some((arg) => /^--kv-cache-memory(?:-bytes)?(?:=|$)/.test(arg));
}
