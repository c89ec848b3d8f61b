import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { errnoCode, messageOf } from "@gpu-canary/errors";
import type { TuningOutcome } from "@gpu-canary/tuning";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, printable, usageError } from "../output.ts";
import { type ProgressSinks, logLine, progressSinks, progressStyle } from "../progress.ts";
import type { FleetState } from "../fleet.ts";
import { type Settings, auditFeedFor, evaluatorFor, loadSettings, withFleet } from "../settings.ts";

async function tuningFor(
  settings: Settings,
  io: Io,
  owner: string,
  progress: ProgressSinks,
  signal?: AbortSignal,
  fleet: FleetState | null = null,
) {
  const tuning = await import("@gpu-canary/tuning");
  const audit = await auditFeedFor(settings, io);
  const store = tuning.createIntentStore({ layout: settings.layout, subsystems: settings.config.subsystems, now: io.now });
  const evaluator = await evaluatorFor(settings, io, { owner, ...(signal ? { signal } : {}), progress, fleet });
  const runner = tuning.createTuningRunner({ config: settings.config, evaluator, audit, promotionsDir: settings.layout.promotionsDir });
  return { tuning, audit, store, runner };
}

/** `observe --from FILE|-`: vLLM log lines in, one JSON line per out-of-memory event out; intents unless --dry-run. */
export async function runObserve(
  options: GlobalOptions & { from?: string; dryRun?: boolean; subsystem?: string },
  io: Io,
): Promise<number> {
  if (!options.from) throw usageError("--from is required", "gpu-canary observe --from /var/log/vllm.log (or --from - for standard input)");
  const settings = loadSettings(io);
  const subsystem = options.subsystem ?? settings.config.subsystems[0] ?? "gpu_allocation";
  if (!settings.config.subsystems.includes(subsystem)) {
    throw usageError(
      `subsystem ${JSON.stringify(subsystem)} is not one of KLR_SUBSYSTEMS (${settings.config.subsystems.join(", ")})`,
      "name one of KLR_SUBSYSTEMS",
    );
  }
  let text: string;
  if (options.from === "-") {
    if (!io.readStdin) throw usageError("standard input is not available here", "pass a file with --from FILE");
    text = await io.readStdin();
  } else {
    try {
      text = await readFile(resolve(options.from), "utf8");
    } catch (error) {
      throw usageError(
        `cannot read ${options.from}: ${errnoCode(error) ?? String(error)}`,
        "give a readable vLLM log file, or - for standard input",
      );
    }
  }
  const { tuning, audit, store } = await tuningFor(settings, io, "gpu-canary observe", {});
  const observer = tuning.createObserver({
    store,
    audit,
    subsystem,
    now: io.now,
    appliedAt: () => tuning.lastAppliedAt(settings.layout.appliedFile),
  });
  let count = 0;
  for (const line of text.split("\n")) {
    const event = await observer.line(line, { dryRun: options.dryRun === true });
    if (!event) continue;
    count += 1;
    const json = {
      event: "oom_detected",
      kind: event.kind,
      line: event.line,
      intent_id: event.intentId,
      merged: event.merged,
      ...(event.appliedUnknown === undefined ? {} : { applied_unknown: event.appliedUnknown }),
    };
    if (options.json) io.stdout(`${JSON.stringify(json)}\n`);
    else
      io.stdout(
        `${event.kind}: ${printable(event.line.slice(0, 160))}\n  → ${event.intentId === null ? "dry run: no intent" : event.merged ? `merged into ${event.intentId}` : `intent ${event.intentId}`}${event.appliedUnknown === undefined ? "" : ` (of its own: when production last changed is unknown: ${event.appliedUnknown})`}\n`,
      );
  }
  if (!options.json && count === 0) io.stdout("No out-of-memory events found.\n");
  return 0;
}

/** `tune [--intent FILE] [--dry-run]`: the tuning runner once, on the given intent or the oldest pending one. */
export async function runTune(options: GlobalOptions & { intent?: string; dryRun?: boolean }, io: Io): Promise<number> {
  const settings = loadSettings(io);
  // tune has always shown its progress on a terminal, --json or not.
  const style = progressStyle(io, {});
  logLine(io, "tune", style, `started${options.intent ? `: intent ${options.intent}` : ""}${options.dryRun ? " (dry run)" : ""}`);
  const code = await tuneOnce(settings, options, io, progressSinks(io, "tune", style));
  logLine(io, "tune", style, `finished: exit ${code}`);
  return code;
}

async function tuneOnce(
  settings: Settings,
  options: GlobalOptions & { intent?: string; dryRun?: boolean },
  io: Io,
  progress: ProgressSinks,
) {
  const controller = new AbortController();
  const unsubscribe = io.onSignal((signal) => controller.abort(signal));
  // A dry run ranks only: it needs no fleet database.
  const work = async (fleet: FleetState | null): Promise<number> => {
    const { tuning, store, runner } = await tuningFor(settings, io, "gpu-canary tune", progress, controller.signal, fleet);
    let claimed;
    if (options.intent) {
      const path = resolve(options.intent);
      if (path.startsWith(`${settings.layout.intentsDir}/`) && !path.slice(settings.layout.intentsDir.length + 1).includes("/")) {
        claimed = await store.claim(path);
        if (!claimed)
          throw usageError(
            `${path} is not a pending intent (already claimed, or gone)`,
            "`ls` the intents folder; processing/ holds claimed ones",
          );
      } else {
        let body: unknown;
        try {
          body = JSON.parse(await readFile(path, "utf8"));
        } catch (error) {
          throw usageError(
            `cannot read the intent ${path}: ${messageOf(error)}`,
            'an intent is a JSON file: {"kind", "subsystem", "evidence", "candidate"?}',
          );
        }
        const input = tuning.parseIntentInput(body, settings.config.subsystems);
        // A dry run of an intent from elsewhere leaves none behind for the daemon to work.
        if (options.dryRun) {
          const intent = { id: "dry-run", ...input };
          return await answerTune({ intent, state: "not saved", outcome: await runner.run(intent, { dryRun: true }) }, options, io);
        }
        const created = await store.create(input);
        claimed = await store.claim(created.path);
        if (!claimed)
          throw usageError(`the intent was merged into ${created.intent.id}, which another worker holds`, "see the intents folder");
      }
    } else {
      claimed = await store.claim();
    }
    if (!claimed) {
      answer(io, options, { intent: null, status: "idle", reason: "no pending intents" }, () => "No pending intents.");
      return 0;
    }
    const worked = await tuning.workIntent({ store, runner }, claimed, { dryRun: options.dryRun === true });
    return await answerTune({ intent: claimed.intent, state: worked.state, outcome: worked.outcome, error: worked.error }, options, io);
  };
  try {
    return await (options.dryRun ? work(null) : withFleet(settings, io, {}, work));
  } finally {
    unsubscribe();
  }
}

/** What `tune` says: the intent, where it went, the ranking and the decision; the exit code of the decision. */
async function answerTune(
  worked: { intent: { id: string; kind: string }; state: string; outcome: TuningOutcome | null; error?: string | undefined },
  options: GlobalOptions,
  io: Io,
): Promise<number> {
  const outcome = worked.outcome;
  const { candidateJson, resultJson } = await import("@gpu-canary/spica-evaluator");
  answer(
    io,
    options,
    {
      intent: worked.intent,
      state: worked.state,
      status: outcome?.status ?? "error",
      reason: outcome?.reason ?? worked.error ?? "",
      current: outcome && { ...candidateJson(outcome.current.candidate), source: outcome.current.source },
      ranking:
        outcome?.ranking.map((s) => ({ ...candidateJson(s.candidate), kv_tokens: s.kvTokens, headroom_bytes: s.headroomBytes })) ?? [],
      chosen: outcome?.chosen ? candidateJson(outcome.chosen) : null,
      result: outcome?.result ? resultJson(outcome.result) : null,
    },
    () =>
      [
        `Intent: ${worked.intent.id} (${worked.intent.kind}) → ${worked.state}`,
        `Current: ${outcome ? `vllm_memory_util ${outcome.current.candidate.vllmMemoryUtil}, Whisper ${outcome.current.candidate.whisperModelSize} (${outcome.current.source})` : "?"}`,
        ...(outcome?.ranking.map(
          (s, i) =>
            `  ${i + 1}. vllm_memory_util ${s.candidate.vllmMemoryUtil}, Whisper ${s.candidate.whisperModelSize}: ${s.kvTokens} KV tokens`,
        ) ?? []),
        `Decision: ${outcome?.status ?? "error"} — ${outcome?.reason ?? worked.error ?? ""}`,
      ].join("\n"),
  );
  if (!outcome) return 4;
  return { promoted: 0, ranked: 0, rolled_back: 0, deferred: 3, refused: 3, no_fit: 1, failed: 1, error: 4 }[outcome.status];
}
