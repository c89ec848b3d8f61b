import { GpuCanaryError } from "@gpu-canary/errors";

export type VllmErrorCode =
  "VLLM_BAD_URL" | "VLLM_UNREACHABLE" | "VLLM_TIMEOUT" | "VLLM_HTTP_ERROR" | "VLLM_BAD_RESPONSE" | "VLLM_ENGINE_DEAD" | "VLLM_NOT_READY";

const HINTS: Record<VllmErrorCode, string> = {
  VLLM_BAD_URL: "set KLR_VLLM_URL to vLLM's base URL, such as http://127.0.0.1:8000",
  VLLM_UNREACHABLE: "is vLLM running and listening there? `systemctl status` of its unit, or its container's logs, say why not",
  VLLM_TIMEOUT: "vLLM accepted the connection but did not answer in time: it may be loading, overloaded or wedged",
  VLLM_HTTP_ERROR: "see vLLM's log for the request",
  VLLM_BAD_RESPONSE: "the server answered, but not in vLLM's format: is KLR_VLLM_URL really vLLM?",
  VLLM_ENGINE_DEAD: "vLLM's engine died (/health answers 503): restart the service",
  VLLM_NOT_READY: "vLLM did not become healthy in time; see its log",
};

export class VllmError extends GpuCanaryError {
  override readonly code: VllmErrorCode;
  readonly status: number | null;

  constructor(code: VllmErrorCode, message: string, options: { status?: number; cause?: unknown } = {}) {
    super(code, message, { kind: "fault", hint: HINTS[code], cause: options.cause, details: { status: options.status ?? null } });
    this.code = code;
    this.status = options.status ?? null;
  }
}

/** Connection refused, reset or hung up: the server is not (yet) there. */
export function isConnectionProblem(error: unknown): boolean {
  const codes = new Set([
    "ECONNREFUSED",
    "ECONNRESET",
    "EPIPE",
    "UND_ERR_SOCKET",
    "UND_ERR_CLOSED",
    "ENOTFOUND",
    "EHOSTUNREACH",
    "ECONNABORTED",
  ]);
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && codes.has(code)) return true;
    if (e === (e as { cause?: unknown }).cause) break;
  }
  return false;
}

export function isTimeout(error: unknown): boolean {
  for (let e: unknown = error; e; e = (e as { cause?: unknown }).cause) {
    const name = (e as { name?: unknown }).name;
    const code = (e as { code?: unknown }).code;
    if (
      name === "TimeoutError" ||
      code === "UND_ERR_HEADERS_TIMEOUT" ||
      code === "UND_ERR_BODY_TIMEOUT" ||
      code === "UND_ERR_CONNECT_TIMEOUT"
    )
      return true;
    if (e === (e as { cause?: unknown }).cause) break;
  }
  return false;
}
