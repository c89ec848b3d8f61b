import { describe, expect, it } from "vitest";
import { accountingFor } from "./vllm-accounting.ts";

const v0Asked = { useV1: "0", source: "KLR_VLLM_EXTRA_ENV" };
const V0 = { startupCheck: false, othersChargedToKv: false, cudaGraphsInBudget: false, v1: false };

describe("accountingFor with VLLM_USE_V1", () => {
  // vLLM 0.8.0 made V1 the default; VLLM_USE_V1=0 kept V0 until 0.11.0 removed it (predictive-memory.md §1.1).
  it.each(["0.8.0", "0.8.5.post1", "0.9.0", "0.9.2", "0.10.1.1"])(
    "%s with VLLM_USE_V1=0 accounts as V0, and says where that was read",
    (version) => {
      expect(accountingFor(version, v0Asked)).toEqual({
        version,
        ...V0,
        note: "VLLM_USE_V1=0 (KLR_VLLM_EXTRA_ENV): the V0 engine's accounting",
      });
      // The same version left at its default runs V1.
      expect(accountingFor(version).v1).toBe(true);
    },
  );

  it("0.9.1 with V0 has no startup check, unlike V1 which refuses to start short of free memory", () => {
    expect(accountingFor("0.9.1").startupCheck).toBe(true);
    expect(accountingFor("0.9.1", { useV1: "0", source: "production's process environment (PID 7)" })).toMatchObject({
      startupCheck: false,
      v1: false,
      note: "VLLM_USE_V1=0 (production's process environment (PID 7)): the V0 engine's accounting",
    });
  });

  it.each(["0.11.0", "0.21.0", "0.29.1"])("%s has no V0: VLLM_USE_V1=0 keeps V1 accounting, with a note", (version) => {
    const asked = accountingFor(version, v0Asked);
    const { note, ...rest } = asked;
    const { note: none, ...plain } = accountingFor(version);
    expect(rest).toEqual(plain);
    expect(none).toBeNull();
    expect(note).toBe(`vLLM ${version} has no V0 engine (removed in 0.11.0): VLLM_USE_V1=0 (KLR_VLLM_EXTRA_ENV) is ignored, V1 accounting`);
  });

  it("reads VLLM_USE_V1 as vLLM does: only a zero selects V0", () => {
    expect(accountingFor("0.9.2", { useV1: "00", source: "x" }).v1).toBe(false);
    for (const useV1 of ["1", "true", ""]) expect(accountingFor("0.9.2", { useV1, source: "x" })).toMatchObject({ v1: true, note: null });
  });

  it("before 0.8 V0 is the engine anyway; with no version known the stricter newest accounting stands, said so", () => {
    expect(accountingFor("0.7.3", v0Asked)).toEqual({ version: "0.7.3", ...V0, note: null });
    expect(accountingFor(null, v0Asked)).toMatchObject({
      v1: true,
      startupCheck: true,
      note: "no vLLM version known: the newest accounting is assumed, VLLM_USE_V1=0 (KLR_VLLM_EXTRA_ENV) not applied",
    });
  });
});
