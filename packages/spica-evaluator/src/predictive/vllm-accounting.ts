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

/** VLLM_USE_V1 as production runs with it, and where that was read. */
export interface EngineChoice {
  useV1: string;
  /** e.g. "production's process environment (PID 4242)", "KLR_VLLM_EXTRA_ENV" */
  source: string;
}

function parse(version: string): [number, number, number] | null {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(version);
  return match ? [Number(match[1]), Number(match[2]), Number(match[3] ?? 0)] : null;
}

const atLeast = (v: [number, number, number], a: number, b: number, c: number) =>
  v[0] !== a ? v[0] > a : v[1] !== b ? v[1] > b : v[2] >= c;

/** vLLM reads it as `bool(int(os.getenv("VLLM_USE_V1", "1")))` (vllm/envs.py): only a zero turns V1 off. */
const asksForV0 = (engine: EngineChoice | null) => engine !== null && /^\s*[+-]?0+\s*$/.test(engine.useV1);

/** V0's accounting, 0.6.5 to 0.10.x: per instance, no startup check, CUDA graphs on top of the budget. */
const v0 = (version: string | null, note: string | null = null): Accounting => ({
  version,
  startupCheck: false,
  othersChargedToKv: false,
  cudaGraphsInBudget: false,
  v1: false,
  note,
});

/**
 * The accounting of a vLLM version, as the engine it runs: from 0.8.0 to 0.10.x V1 is the
 * default and `VLLM_USE_V1=0` selects V0; before 0.8 V0 is the engine anyway; 0.11.0 removed V0,
 * so the variable selects nothing there (said so in `note`).
 */
export function accountingFor(version: string | null, engine: EngineChoice | null = null): Accounting {
  const parsed = version === null ? null : parse(version);
  const wantsV0 = asksForV0(engine);
  const v0Asked = wantsV0 && engine ? `VLLM_USE_V1=${engine.useV1} (${engine.source})` : "";
  if (parsed === null) {
    const unknown =
      version === null
        ? "no vLLM version known: the newest accounting is assumed"
        : `vLLM version ${version} not understood: the newest accounting is assumed`;
    return {
      version,
      startupCheck: true,
      othersChargedToKv: false,
      cudaGraphsInBudget: true,
      v1: true,
      // Without a version, V0 cannot be told to exist: the stricter V1 checks stand.
      note: wantsV0 ? `${unknown}, ${v0Asked} not applied` : unknown,
    };
  }
  const v = parsed;
  if (!atLeast(v, 0, 6, 4))
    return { version, startupCheck: false, othersChargedToKv: false, cudaGraphsInBudget: false, v1: false, note: null };
  if (!atLeast(v, 0, 6, 5))
    return { version, startupCheck: false, othersChargedToKv: true, cudaGraphsInBudget: false, v1: false, note: null };
  if (!atLeast(v, 0, 8, 0)) return v0(version);
  if (wantsV0 && !atLeast(v, 0, 11, 0)) return v0(version, `${v0Asked}: the V0 engine's accounting`);
  if (!atLeast(v, 0, 9, 1))
    return { version, startupCheck: false, othersChargedToKv: true, cudaGraphsInBudget: false, v1: true, note: null };
  const ignored = wantsV0 ? `vLLM ${version} has no V0 engine (removed in 0.11.0): ${v0Asked} is ignored, V1 accounting` : null;
  return { version, startupCheck: true, othersChargedToKv: false, cudaGraphsInBudget: atLeast(v, 0, 21, 0), v1: true, note: ignored };
}
