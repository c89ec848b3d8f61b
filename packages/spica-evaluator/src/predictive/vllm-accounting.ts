/**
 * How a vLLM version accounts memory (research: predictive-memory.md §1.1), reduced to the
 * questions the model asks.
 */
export interface Accounting {
  version: string | null;
  /** does vLLM refuse to start when free memory < util × total (v0.9.1+) */
  startupCheck: boolean;
  /** do other processes' memory come out of vLLM's KV budget (0.6.4; V1 0.8.0-0.9.0) */
  othersChargedToKv: boolean;
  /** is the CUDA-graph memory estimated inside the budget (≥ 0.21) or on top of it */
  cudaGraphsInBudget: boolean;
  /** V1 engine (non-torch increase ≈ 0.13 GiB at TP 1) or V0 */
  v1: boolean;
  note: string | null;
}

function parse(version: string): [number, number, number] | null {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)] : null;
}

const atLeast = (v: [number, number, number], a: number, b: number, c: number) =>
  v[0] !== a ? v[0] > a : v[1] !== b ? v[1] > b : v[2] >= c;

export function accountingFor(version: string | null): Accounting {
  const parsed = version === null ? null : parse(version);
  if (parsed === null) {
    return {
      version,
      startupCheck: true,
      othersChargedToKv: false,
      cudaGraphsInBudget: true,
      v1: true,
      note:
        version === null
          ? "no vLLM version known: the newest accounting is assumed"
          : `vLLM version ${version} not understood: the newest accounting is assumed`,
    };
  }
  const v = parsed;
  if (!atLeast(v, 0, 6, 4))
    return { version, startupCheck: false, othersChargedToKv: false, cudaGraphsInBudget: false, v1: false, note: null };
  if (!atLeast(v, 0, 6, 5))
    return { version, startupCheck: false, othersChargedToKv: true, cudaGraphsInBudget: false, v1: false, note: null };
  if (!atLeast(v, 0, 8, 0))
    return { version, startupCheck: false, othersChargedToKv: false, cudaGraphsInBudget: false, v1: false, note: null };
  if (!atLeast(v, 0, 9, 1))
    return { version, startupCheck: false, othersChargedToKv: true, cudaGraphsInBudget: false, v1: true, note: null };
  return { version, startupCheck: true, othersChargedToKv: false, cudaGraphsInBudget: atLeast(v, 0, 21, 0), v1: true, note: null };
}
