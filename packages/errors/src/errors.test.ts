import { describe, expect, it } from "vitest";
import { EXIT, GpuCanaryError, errnoCode, exitCodeOf, isGpuCanaryError, messageOf } from "./index.ts";

describe("GpuCanaryError", () => {
  it("carries a stable code, a hint and a kind that maps to the contract's exit code", () => {
    const error = new GpuCanaryError("BUDGET_UNREADABLE", "bad file", { hint: "repair it", kind: "fault" });
    expect(error.code).toBe("BUDGET_UNREADABLE");
    expect(error.toJSON()).toEqual({ code: "BUDGET_UNREADABLE", message: "bad file", hint: "repair it" });
    expect(exitCodeOf(error.kind)).toBe(EXIT.fault);
    expect(exitCodeOf("usage")).toBe(2);
    expect(exitCodeOf("refused")).toBe(3);
    expect(isGpuCanaryError(error)).toBe(true);
    expect(isGpuCanaryError(new Error("x"))).toBe(false);
  });

  it("defaults to a fault with an empty hint when nothing else is said", () => {
    const error = new GpuCanaryError("X", "y");
    expect(error.kind).toBe("fault");
    expect(error.hint).toBe("");
  });

  it("reads the errno code of system errors and nothing else", () => {
    expect(errnoCode(Object.assign(new Error("x"), { code: "ENOENT" }))).toBe("ENOENT");
    expect(errnoCode(new Error("x"))).toBeUndefined();
    expect(errnoCode("ENOENT")).toBeUndefined();
    expect(errnoCode({ code: 5 })).toBeUndefined();
  });

  it("gives anything thrown as text: an Error's message, else the value as a string", () => {
    expect(messageOf(new GpuCanaryError("X", "the lock file is not JSON"))).toBe("the lock file is not JSON");
    expect(messageOf("plain text")).toBe("plain text");
    expect(messageOf(42)).toBe("42");
  });
});
