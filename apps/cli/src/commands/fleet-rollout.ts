import type { Command } from "commander";
import type { Rollout } from "@gpu-canary/fleet-store";
import type { GlobalOptions, Io } from "../io.ts";
import { humanDuration, isoUtc } from "../output.ts";

// Only types and output.ts (which the program loads at every start anyway) at the top: the program
// registers these commands at every start, and a command loads what it needs when it runs (cold start).

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

/** `fleet rollout <run_id> [--wave N] [--soak-hours H]`, `fleet rollout status [ID|RUN_ID]`, `fleet rollout resume ID`, under `fleet`. */
export function addRolloutCommands(
  fleet: Command,
  run: (work: (command: Command) => Promise<number>) => (...args: unknown[]) => Promise<void>,
  globals: (command: Command) => GlobalOptions,
  io: Io,
): void {
  const rollout = fleet
    .command("rollout")
    .description("apply a promotion to every host with the same fingerprint, N at a time, each by its daemon in its own window")
    .argument("[run_id]", "the promotion's run id (this host's promotions folder, else the fleet's promotions table)")
    .option("--wave <N>", "hosts applying at once (default 1)")
    .option("--soak-hours <H>", "after a host applies it, the next hosts wait this long before they take their turn (default 0)")
    .addHelpText(
      "after",
      `${examples([
        "gpu-canary fleet rollout r-20261203T031200-a1b2c3",
        "gpu-canary fleet rollout r-20261203T031200-a1b2c3 --wave 2 --soak-hours 24 --json",
        "gpu-canary fleet rollout status",
      ])}
The rollout stops (paused) at the first host whose apply rolls back, then or later (an out-of-memory event within
KLR_APPLY_WATCH_HOURS, an operator's rollback); --soak-hours as long as KLR_APPLY_WATCH_HOURS lets each host's
watch end before the next host takes it. A host whose fingerprint differs is skipped.
Exit codes: 0 started, 2 usage (unknown promotion, KLR_STATE_URL unset), 3 refused (promotion not applicable, a rollout of it running, database away).`,
    )
    .action(
      run(async (command) => {
        const opts = command.opts<{ wave?: string; soakHours?: string }>();
        return runFleetRollout(
          command.args[0],
          {
            ...globals(command),
            ...(opts.wave === undefined ? {} : { wave: opts.wave }),
            ...(opts.soakHours === undefined ? {} : { soakHours: opts.soakHours }),
          },
          io,
        );
      }),
    );
  rollout
    .command("status")
    .description("a rollout and each host's state in it: by id or run id, else the latest")
    .argument("[id]", "the rollout's id (ro-…) or its promotion's run id")
    .addHelpText(
      "after",
      `${examples(["gpu-canary fleet rollout status", "gpu-canary fleet rollout status r-20261203T031200-a1b2c3 --json | jq '.hosts'"])}
Exit codes: 0 answered (none started yet included), 2 no rollout of that id or KLR_STATE_URL unset, 3 database away.`,
    )
    .action(run(async (command) => runFleetRolloutStatus(command.args[0], globals(command), io)));
  rollout
    .command("resume")
    .description("run a paused rollout again: the host that rolled back stays as it is, the next hosts are assigned")
    .argument("<id>", "the rollout's id (ro-…) or its promotion's run id")
    .option("--reason <TEXT>", "why, recorded with the rollout")
    .addHelpText("after", examples(["gpu-canary fleet rollout resume ro-20261203T101500Z-1a2b3c --reason 'gpu-b had a noisy neighbour'"]))
    .action(
      run(async (command) => {
        const opts = command.opts<{ reason?: string }>();
        return runFleetRolloutResume(
          command.args[0] ?? "",
          { ...globals(command), reason: opts.reason ?? "resumed from the command line" },
          io,
        );
      }),
    );
}

/** A rollout as `--json` shows it. */
function rolloutJson(r: Rollout) {
  return {
    rollout_id: r.id,
    run_id: r.runId,
    from_host: r.fromHost,
    wave: r.wave,
    soak_seconds: r.soakSeconds,
    waits_until: r.waitsUntil && isoUtc(r.waitsUntil),
    state: r.state,
    state_reason: r.stateReason,
    created_at: isoUtc(r.createdAt),
    updated_at: isoUtc(r.updatedAt),
    candidate: r.promotion.candidate ?? null,
    hosts: r.hosts.map((h) => ({
      host_id: h.hostId,
      position: h.position,
      state: h.state,
      reason: h.reason,
      updated_at: isoUtc(h.updatedAt),
    })),
  };
}

function rolloutText(r: Rollout): string {
  const width = Math.max(...r.hosts.map((h) => h.hostId.length), 4);
  const soak = r.soakSeconds > 0 ? `, each ${humanDuration(r.soakSeconds)} after the last applied it` : "";
  return [
    `Rollout ${r.id} of promotion ${r.runId} (proven on ${r.fromHost}), ${r.wave} host${r.wave === 1 ? "" : "s"} at a time${soak}: ${r.state}${r.stateReason ? ` (${r.stateReason})` : ""}`,
    ...r.hosts.map((h) => `  ${h.hostId.padEnd(width)}  ${h.state}${h.reason ? `: ${h.reason}` : ""}`),
    ...(r.state === "running"
      ? [
          r.waitsUntil
            ? `The next hosts take their turn after ${isoUtc(r.waitsUntil)}, each in its own maintenance window.`
            : "Each assigned host's gpu-canaryd applies it in its own maintenance window.",
        ]
      : []),
  ].join("\n");
}

/** `fleet rollout <run_id> [--wave N] [--soak-hours H]`: start a rollout of a promotion over the fleet. */
export async function runFleetRollout(
  runId: string | undefined,
  options: GlobalOptions & { wave?: string; soakHours?: string },
  io: Io,
): Promise<number> {
  const { usageError, answer } = await import("../output.ts");
  if (runId === undefined || runId.trim() === "")
    throw usageError("fleet rollout: expected a promotion's run id", "gpu-canary fleet rollout r-20261203T031200-a1b2c3 --wave 1");
  const wave = options.wave === undefined ? 1 : Number(options.wave);
  if (!Number.isInteger(wave) || wave < 1)
    throw usageError(
      `--wave: expected a whole number of hosts, at least 1, got ${options.wave}`,
      "gpu-canary fleet rollout RUN_ID --wave 2",
    );
  const soakHours = options.soakHours === undefined ? 0 : Number(options.soakHours);
  if (options.soakHours?.trim() === "" || !Number.isFinite(soakHours) || soakHours < 0 || soakHours > 720)
    throw usageError(
      `--soak-hours: expected hours from 0 to 720, got ${options.soakHours}`,
      "gpu-canary fleet rollout RUN_ID --soak-hours 24",
    );
  const soakSeconds = Math.round(soakHours * 3600);
  const { withDatabase } = await import("./fleet.ts");
  const { GpuCanaryError } = await import("@gpu-canary/errors");
  const evaluator = await import("@gpu-canary/spica-evaluator");
  const { auditFeedFor } = await import("../settings.ts");
  return withDatabase(io, true, async (fleet, settings) => {
    const dir = settings.layout.promotionsDir;
    // This host's file first: it is the promotion as proven here; else the copy another host put in the database.
    let found: { doc: Record<string, unknown>; hostId: string } | null = await evaluator
      .readPromotion(dir, runId)
      .then((p) => ({ doc: p, hostId: fleet.hostId }))
      .catch((error: unknown) => {
        if (error instanceof GpuCanaryError && error.code === "PROMOTION_NOT_FOUND") return null;
        throw error;
      });
    found ??= await fleet.store.fleetPromotion(fleet.pool, runId);
    if (!found) throw new evaluator.PromotionNotFoundError(`${dir} nor the fleet database's promotions`, runId);
    const parsed = evaluator.promotionSchema.safeParse(found.doc);
    if (!parsed.success)
      throw new GpuCanaryError(
        "PROMOTION_UNREADABLE",
        `promotion ${runId} (from ${found.hostId}) is not a promotion: ${parsed.error.message}`,
        {
          kind: "fault",
          hint: "repair it on the host that proved it; gpu-canary will not guess a promotion's content",
        },
      );
    const promotion = parsed.data;
    if (promotion.state !== "proposed" && promotion.state !== "applied")
      throw new GpuCanaryError(
        "PROMOTION_NOT_APPLICABLE",
        `promotion ${runId} is ${promotion.state}${promotion.state_reason ? `: ${promotion.state_reason}` : ""}; only a proposed or applied promotion is rolled out`,
        {
          kind: "refused",
          hint: "prove the candidate again with a canary (`gpu-canary evaluate --mode canary`), then roll that promotion out",
        },
      );
    const fingerprint = promotion.fingerprint;
    if (fingerprint === undefined)
      throw new GpuCanaryError("PROMOTION_NOT_APPLICABLE", `promotion ${runId} has no fingerprint: no host can be known to be the same`, {
        kind: "refused",
        hint: "it was written by an older gpu-canary; prove the candidate again with a canary, then roll that promotion out",
      });
    const differs = (published: unknown): string[] => {
      if (published === undefined || published === null)
        return ["its fingerprint is unknown: its gpu-canaryd has not published one (it does at start with KLR_STATE_URL)"];
      const host = evaluator.fingerprintSchema.safeParse(published);
      if (!host.success) return ["its published fingerprint is unreadable"];
      return evaluator.fingerprintDifferences(fingerprint, host.data);
    };
    const rollout = await fleet.store.startRollout(fleet.pool, {
      runId,
      fromHost: found.hostId,
      wave,
      soakSeconds,
      promotion: found.doc,
      differs,
      now: io.now(),
    });
    await (
      await auditFeedFor(settings, io)
    ).append({
      event: "fleet_rollout_started",
      run_id: runId,
      rollout_id: rollout.id,
      wave,
      soak_seconds: soakSeconds,
      hosts: rollout.hosts.map((h) => ({ host_id: h.hostId, state: h.state })),
    });
    answer(io, options, rolloutJson(rollout), () => rolloutText(rollout));
    return 0;
  });
}

/** `fleet rollout status [ID|RUN_ID]`: a rollout (the latest when none is named) and its hosts. */
export async function runFleetRolloutStatus(id: string | undefined, options: GlobalOptions, io: Io): Promise<number> {
  const { answer } = await import("../output.ts");
  const { withDatabase } = await import("./fleet.ts");
  return withDatabase(io, true, async (fleet) => {
    const rollout = await fleet.store.rolloutStatus(fleet.pool, id).catch((error: unknown) => {
      // Asked for none in particular, "none yet" is an answer (a read command); a named one that is not there is a usage error.
      if (id === undefined && error instanceof fleet.store.RolloutNotFoundError) return null;
      throw error;
    });
    if (rollout === null) {
      answer(
        io,
        options,
        { rollout_id: null, state: null, hosts: [] },
        () => "No rollout was started yet (`gpu-canary fleet rollout RUN_ID`).",
      );
      return 0;
    }
    answer(io, options, rolloutJson(rollout), () => rolloutText(rollout));
    return 0;
  });
}

/** `fleet rollout resume ID`: a paused rollout runs again; audited. */
export async function runFleetRolloutResume(id: string, options: GlobalOptions & { reason: string }, io: Io): Promise<number> {
  const { answer } = await import("../output.ts");
  const { withDatabase } = await import("./fleet.ts");
  const { auditFeedFor } = await import("../settings.ts");
  return withDatabase(io, true, async (fleet, settings) => {
    const found = await fleet.store.rolloutStatus(fleet.pool, id);
    const rollout = await fleet.store.resumeRollout(fleet.pool, found.id, `resumed by ${fleet.hostId}: ${options.reason}`);
    await (
      await auditFeedFor(settings, io)
    ).append({ event: "fleet_rollout_resumed", run_id: rollout.runId, rollout_id: rollout.id, reason: options.reason });
    answer(io, options, rolloutJson(rollout), () => rolloutText(rollout));
    return 0;
  });
}
