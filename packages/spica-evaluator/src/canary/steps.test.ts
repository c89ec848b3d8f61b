import { InterruptedError } from "@gpu-canary/errors";
import { describe, expect, it } from "vitest";
import { type JournalPatch, type Step, type StepIo, HaltUnwind, runSteps } from "./steps.ts";

/** A run whose steps only write down what happened, in order. */
function recorder(options: { signal?: AbortSignal; journalFails?: (patch: JournalPatch) => boolean } = {}) {
  const log: string[] = [];
  const journal: JournalPatch[] = [];
  const io: StepIo = {
    runId: "run-1",
    journal: (patch) => {
      if (options.journalFails?.(patch)) return Promise.reject(new Error("the lock was taken away"));
      journal.push(patch);
      log.push(`journal ${String(patch.phase)}`);
      return Promise.resolve();
    },
    audit: (event) => {
      log.push(`audit ${event.event}`);
      return Promise.resolve();
    },
    progress: (phase, line) => log.push(`say ${phase}${line === null ? "" : `: ${line}`}`),
    ...(options.signal ? { signal: options.signal } : {}),
  };
  const step = (phase: string, extra: Partial<Step<unknown>> = {}): Step<unknown> => ({
    phase,
    do: () => {
      log.push(`do ${phase}`);
      return Promise.resolve(undefined);
    },
    undo: {
      phase: `undo_${phase}`,
      do: () => {
        log.push(`undo ${phase}`);
        return Promise.resolve(undefined);
      },
    },
    ...extra,
  });
  return { log, journal, io, step };
}

const fails = (message: string) => () => Promise.reject(new Error(message));

describe("runSteps", () => {
  it("journals each phase before its step acts, then undoes every step in reverse", async () => {
    const r = recorder();
    const out = await runSteps([r.step("arm"), r.step("quiesce"), r.step("canary")], null, r.io);
    expect(out).toEqual({ failure: null, notes: [], done: ["arm", "quiesce", "canary"] });
    expect(r.log.filter((l) => !l.startsWith("journal undo") && !l.startsWith("say"))).toEqual([
      "journal arm",
      "do arm",
      "journal quiesce",
      "do quiesce",
      "journal canary",
      "do canary",
      "undo canary",
      "undo quiesce",
      "undo arm",
    ]);
  });

  it("announces every step and undo once, with its phase, after its journal and before it acts — a line only where it says one", async () => {
    const r = recorder();
    const quiesce = r.step("quiesce", { says: () => "quiescing production" });
    await runSteps([r.step("arm"), quiesce], null, r.io);
    expect(r.log.filter((l) => !l.startsWith("audit"))).toEqual([
      "journal arm",
      "say arm",
      "do arm",
      "journal quiesce",
      "say quiesce: quiescing production",
      "do quiesce",
      "journal undo_quiesce",
      "say undo_quiesce",
      "undo quiesce",
      "journal undo_arm",
      "say undo_arm",
      "undo arm",
    ]);
  });

  it("a failing step stops the run; its own undo runs (it may have half-acted), and those before it, in reverse", async () => {
    const r = recorder();
    const out = await runSteps([r.step("arm"), r.step("quiesce", { do: fails("stop command exited 1") }), r.step("canary")], null, r.io);
    expect(out.failure?.message).toBe("stop command exited 1");
    expect(r.log.filter((l) => l.startsWith("do") || l.startsWith("undo"))).toEqual(["do arm", "undo quiesce", "undo arm"]);
  });

  it("a signal before a step: nothing more acts; a signal during its journal write takes the journal back", async () => {
    const controller = new AbortController();
    const r = recorder({ signal: controller.signal });
    const quiesce = r.step("quiesce", {
      journal: () => {
        controller.abort("SIGTERM");
        return { production_stopped_at: "2026-12-02T03:00:00Z" };
      },
    });
    const out = await runSteps([r.step("arm"), quiesce, r.step("canary")], null, r.io);
    expect(out.failure).toBeInstanceOf(InterruptedError);
    expect(r.log.filter((l) => l.startsWith("do") || l.startsWith("undo"))).toEqual(["do arm", "undo arm"]);
    // Written, then taken back: the journal never claims a quiesce that did not happen.
    expect(r.journal[1]).toMatchObject({ phase: "quiesce", production_stopped_at: "2026-12-02T03:00:00Z" });
    expect(r.journal[2]).toEqual({ phase: "arm", production_stopped_at: undefined });
  });

  it("no signal cuts the undoing short, and the run is reported interrupted, not done", async () => {
    const controller = new AbortController();
    const r = recorder({ signal: controller.signal });
    const canary = r.step("canary", {
      undo: {
        phase: "undo_canary",
        do: () => {
          controller.abort("SIGINT");
          r.log.push("undo canary");
          return Promise.resolve(undefined);
        },
      },
    });
    const out = await runSteps([r.step("arm"), r.step("quiesce"), canary], null, r.io);
    expect(out.failure).toBeInstanceOf(InterruptedError);
    expect(r.log.filter((l) => l.startsWith("undo"))).toEqual(["undo canary", "undo quiesce", "undo arm"]);
  });

  it("an undo that halts (production not back) stops the unwinding: the watchdog stays armed", async () => {
    const r = recorder();
    const quiesce = r.step("quiesce", {
      undo: { phase: "restoring", do: () => Promise.reject(new HaltUnwind(new Error("production could not be restored"))) },
    });
    const out = await runSteps([r.step("arm"), quiesce, r.step("canary")], null, r.io);
    expect(out.failure?.message).toBe("production could not be restored");
    expect(r.log.filter((l) => l.startsWith("undo"))).toEqual(["undo canary"]);
  });

  it("an undo that fails otherwise fails the run but the rest still unwinds; a note does not fail it", async () => {
    const r = recorder();
    const whisper = r.step("whisper", { undo: { phase: "whisper_back", do: () => Promise.resolve("Whisper could not be switched back") } });
    const canary = r.step("canary", { undo: { phase: "undo_canary", do: fails("canary would not stop") } });
    const out = await runSteps([r.step("arm"), whisper, canary], null, r.io);
    expect(out.failure?.message).toBe("canary would not stop");
    expect(out.notes).toEqual(["Whisper could not be switched back"]);
    expect(r.log.filter((l) => l.startsWith("undo"))).toEqual(["undo arm"]);
  });

  it("a journal that can no longer be written while undoing (the lock force-released) does not stop the repair", async () => {
    const r = recorder({ journalFails: (patch) => String(patch.phase).startsWith("undo") });
    const out = await runSteps([r.step("arm"), r.step("quiesce")], null, r.io);
    expect(out.failure?.message).toBe("the lock was taken away");
    expect(r.log.filter((l) => l.startsWith("undo"))).toEqual(["undo quiesce", "undo arm"]);
  });

  it("records each step's and undo's audit event with the run id and what it returned; skips a step whose `when` says no", async () => {
    const r = recorder();
    const events: unknown[] = [];
    r.io.audit = (event) => {
      events.push(event);
      return Promise.resolve();
    };
    const stop: Step<unknown> = {
      phase: "quiescing",
      do: () => Promise.resolve({ method: "stop", seconds: 1.5 }),
      event: "production_stopped",
      undo: { phase: "restoring", do: () => Promise.resolve({ seconds: 3 }), event: "production_restored" },
    };
    await runSteps([stop, r.step("whisper", { when: () => false })], null, r.io);
    expect(events).toEqual([
      { event: "production_stopped", run_id: "run-1", method: "stop", seconds: 1.5 },
      { event: "production_restored", run_id: "run-1", seconds: 3 },
    ]);
    expect(r.log).not.toContain("do whisper");
  });
});
