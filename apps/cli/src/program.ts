import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";
import { EXIT } from "@gpu-canary/errors";
import type { GlobalOptions, Io } from "./io.ts";
import { addRolloutCommands } from "./commands/fleet-rollout.ts";
import { reportError } from "./output.ts";

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

/**
 * The command line. Commands load their modules when they run, so `window` never pays for
 * what `evaluate` needs (cold start is measured by `pnpm bench`).
 */
/** The version in this package's package.json (src/ and dist/ both sit one level below it). */
function packageVersion(): string {
  const parsed: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  return typeof parsed === "object" && parsed !== null && "version" in parsed && typeof parsed.version === "string"
    ? parsed.version
    : "unknown";
}

export function createProgram(io: Io, setExitCode: (code: number) => void): Command {
  const program = new Command("gpu-canary");
  const globals = (command: Command): GlobalOptions => command.optsWithGlobals();
  const run =
    (work: (command: Command) => number | Promise<number>) =>
    async (...args: unknown[]) => {
      const command = args.at(-1) as Command;
      try {
        setExitCode(await work(command));
      } catch (error) {
        setExitCode(reportError(io, globals(command), error));
      }
    };

  program
    .description("Change a production vLLM server's GPU settings without hurting production.")
    .option("--json", 'print one JSON document on stdout (errors as {"error": {code, message, hint}})')
    .option("--debug", "show stack traces of errors")
    .version(packageVersion(), "-V, --version", "print gpu-canary's version")
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError("(run with --help for usage)")
    .enablePositionalOptions()
    .addHelpText(
      "after",
      `${examples(["gpu-canary status", "gpu-canary doctor", `gpu-canary evaluate --candidate '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}'`])}
Exit codes: 0 ok, 1 checked and not passed, 2 usage or settings error, 3 refused by a safety gate, 4 needs an operator; 128+N after signal N.`,
    );

  program
    .command("config")
    .description("show the effective KLR_* settings and where each came from")
    .addHelpText("after", examples(["gpu-canary config", "gpu-canary config --json | jq '.settings.KLR_CANARY_MODE'"]))
    .action(
      run(async (command) => {
        const { runConfig } = await import("./commands/config.ts");
        return runConfig(globals(command), io);
      }),
    );

  program
    .command("window")
    .description("is the maintenance window open; when it next opens and closes")
    .option("--at <ISO>", "answer for another instant (without an offset: in KLR_GPU_MAINTENANCE_TZ)")
    .addHelpText("after", examples(["gpu-canary window", "gpu-canary window --at 2026-03-08T03:30 --json"]))
    .action(
      run(async (command) => {
        const { runWindow } = await import("./commands/window.ts");
        return runWindow(globals(command), io);
      }),
    );

  const budget = program
    .command("budget")
    .description("the night's downtime budget: seconds used, allowed and left")
    .option("--date <YYYYMMDD>", "the night (date its window opened); default: the open window's, else the last one's")
    .addHelpText("after", examples(["gpu-canary budget", "gpu-canary budget --date 20261128 --json", "gpu-canary budget reset --yes"]))
    .action(
      run(async (command) => {
        const { runBudget } = await import("./commands/budget.ts");
        return runBudget(globals(command), io);
      }),
    );

  budget
    .command("reset")
    .description("emergency: set the night's used downtime to 0 (recorded in the file)")
    .option("--yes", "really reset (without it, nothing is changed)")
    .option("--date <YYYYMMDD>", "the night to reset; default as for `budget`")
    .option("--reason <TEXT>", "why, kept with the reset")
    .addHelpText(
      "after",
      examples(["gpu-canary budget reset --yes", "gpu-canary budget reset --yes --date 20261128 --reason 'stuck after outage'"]),
    )
    .action(
      run(async (command) => {
        const { runBudgetReset } = await import("./commands/budget.ts");
        return runBudgetReset(globals(command), io);
      }),
    );

  program
    .command("gpus")
    .description("the GPUs nvidia-smi reports: memory in MiB (total, reserved, used, free) and compute processes")
    .addHelpText("after", examples(["gpu-canary gpus", "gpu-canary gpus --json | jq '.gpus[0].memory_free_mib'"]))
    .action(
      run(async (command) => {
        const { runGpus } = await import("./commands/gpus.ts");
        return runGpus(globals(command), io);
      }),
    );

  const lock = program
    .command("lock")
    .description("the GPU maintenance lock: who holds it, release it, run a command under it")
    .addHelpText("after", examples(["gpu-canary lock status", "gpu-canary lock release", "gpu-canary lock run --wait 60 -- nvidia-smi"]));
  lock
    .command("status")
    .description("who holds the GPU lock, for how long, alive or stale and why (exit 0 whatever it finds)")
    .addHelpText("after", examples(["gpu-canary lock status", "gpu-canary lock status --json | jq .holder"]))
    .action(
      run(async (command) => {
        const { runLockStatus } = await import("./commands/lock.ts");
        return runLockStatus(globals(command), io);
      }),
    );
  lock
    .command("release")
    .description("release a stale GPU lock; --force releases any (a live holder's, a crashed run's) and moves an unreadable one aside")
    .option("--force", "release whatever holds it, loudly; the evicted holder is fenced out; an unreadable lock file is kept beside it")
    .option("--reason <TEXT>", "why, recorded in the audit trail")
    .addHelpText("after", examples(["gpu-canary lock release", "gpu-canary lock release --force --reason 'holder hung'"]))
    .action(
      run(async (command) => {
        const { runLockRelease } = await import("./commands/lock.ts");
        return runLockRelease(globals(command), io);
      }),
    );
  lock
    .command("run")
    .description("run a command while holding the GPU lock, like flock(1); its exit code passes through")
    .argument("<command...>", "the command and its arguments, after --")
    .option("--wait <SECONDS>", "give up after this long (0: fail at once); default: wait as long as it takes")
    .option("--conflict-exit-code <N>", "exit code when the lock could not be had (default 3)")
    .passThroughOptions()
    .addHelpText(
      "after",
      `\nThe command holds the lock as long as it runs. Unlike flock(1), it dies with the wrapper: if
\`gpu-canary lock run\` is killed outright (SIGKILL), the command is killed too (PR_SET_PDEATHSIG
through util-linux's setpriv), so a lock that \`lock release\` frees as stale guards nothing still
running. SIGTERM and SIGINT are passed to the command.
` + examples(["gpu-canary lock run -- nvidia-smi", "gpu-canary lock run --wait 60 --conflict-exit-code 75 -- ./benchmark.sh --fast"]),
    )
    .action(
      run(async (command) => {
        const { runLockRun } = await import("./commands/lock.ts");
        return runLockRun(command.args, globals(command), io);
      }),
    );

  const audit = program.command("audit").description("read the audit trail");
  audit
    .command("tail")
    .description("the last events, one line each; --follow keeps printing new ones")
    .option("-n, --lines <N>", "how many events (default 20)")
    .option("--follow", "keep printing new events, across midnight, until Ctrl-C")
    .addHelpText("after", examples(["gpu-canary audit tail -n 50", "gpu-canary audit tail --follow --json | jq ."]))
    .action(
      run(async (command) => {
        const { runAuditTail } = await import("./commands/audit.ts");
        return runAuditTail(globals(command), io);
      }),
    );
  audit
    .command("query")
    .description("events by time, kind and run, across day files")
    .option("--since <ISO>", "from this instant (inclusive)")
    .option("--until <ISO>", "before this instant")
    .option("--event <NAME>", "only this event kind")
    .option("--run <RUN_ID>", "only this run")
    .option(
      "--fleet",
      "KLR_STATE_URL: every host's events from the fleet's database (this host's copied there first), each with its host_id",
    )
    .option("--host <HOST>", "KLR_STATE_URL: only this host's events from the fleet's database (its KLR_HOST_ID); implies --fleet")
    .addHelpText(
      "after",
      examples([
        "gpu-canary audit query --since 2026-11-28T03:00 --event budget_charged",
        "gpu-canary audit query --run r-20261128-0301 --json",
        "gpu-canary audit query --fleet --event fleet_slot_released",
        "gpu-canary audit query --fleet --host gpu-b --since 2026-11-28T03:00 --json",
      ]),
    )
    .action(
      run(async (command) => {
        const { runAuditQuery } = await import("./commands/audit.ts");
        return runAuditQuery(globals(command), io);
      }),
    );

  program
    .command("status")
    .description("window, budget, lock, rate limits, mode, GPUs and production health in one view")
    .addHelpText("after", examples(["gpu-canary status", "gpu-canary status --json | jq .budget"]))
    .action(
      run(async (command) => {
        const { runStatus } = await import("./commands/status.ts");
        return runStatus(globals(command), io);
      }),
    );

  program
    .command("doctor")
    .description("the checklist's prerequisite and configuration checks, pass/fail with a fix each (exit 1 if any fails)")
    .addHelpText("after", examples(["gpu-canary doctor", "gpu-canary doctor --json | jq '.checks[] | select(.ok == false)'"]))
    .action(
      run(async (command) => {
        const { runDoctor } = await import("./commands/doctor.ts");
        return runDoctor(globals(command), io);
      }),
    );

  program
    .command("evaluate")
    .description("SpicaGPUAllocation.run_test on one candidate: predictive (arithmetic) or canary (a real vLLM under the safety gates)")
    .option("--candidate <JSON>", 'the candidate, e.g. {"vllm_memory_util": 0.75, "whisper_model_size": "small"}')
    .option("--mode <MODE>", "predictive or canary (default: KLR_CANARY_MODE)")
    .option("--subsystem <NAME>", "whose rate limit the run counts against (default: the first of KLR_SUBSYSTEMS)")
    .option("--wait <SECONDS>", "KLR_STATE_URL: wait this long for a fleet maintenance slot (default 0: refused at once, exit 3)")
    .addHelpText(
      "after",
      `${examples([
        `gpu-canary evaluate --candidate '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}'`,
        `gpu-canary evaluate --mode canary --candidate '{"vllm_memory_util": 0.8, "whisper_model_size": "base"}' --json`,
      ])}
Exit codes: 0 passed, 1 failed or inconclusive, 2 malformed candidate, 3 refused by a safety gate, 4 error; 128+N after signal N (production restored first).`,
    )
    .action(
      run(async (command) => {
        const { runEvaluate } = await import("./commands/evaluate.ts");
        return runEvaluate(globals(command), io);
      }),
    );

  program
    .command("recover")
    .description("finish what a crashed run left: restore production if needed, charge its downtime, release the lock")
    .addHelpText("after", examples(["gpu-canary recover", "gpu-canary recover --json"]))
    .action(
      run(async (command) => {
        const { runRecover } = await import("./commands/recover.ts");
        return runRecover(globals(command), io);
      }),
    );

  program
    .command("promotions")
    .description("the candidates that passed a canary, with their evidence")
    .argument("[list]", "list them (the default)")
    .addHelpText("after", examples(["gpu-canary promotions", "gpu-canary promotions list --json | jq '.promotions[-1]'"]))
    .action(
      run(async (command) => {
        const what = command.args[0];
        if (what !== undefined && what !== "list") {
          const { usageError } = await import("./output.ts");
          throw usageError(`unknown promotions action ${JSON.stringify(what)}`, "gpu-canary promotions list");
        }
        const { runPromotions } = await import("./commands/promotions.ts");
        return runPromotions(globals(command), io);
      }),
    );

  program
    .command("production")
    .description("what production serves with now, what its --config file says, and what the newest promotion would change")
    .addHelpText("after", examples(["gpu-canary production", "gpu-canary production --json | jq '.newest_promotion.changes'"]))
    .action(
      run(async (command) => {
        const { runProduction } = await import("./commands/production.ts");
        return runProduction(globals(command), io);
      }),
    );

  program
    .command("apply")
    .description(
      "put a promotion into production's --config file, restart production and verify it under load; rolled back by itself when it fails",
    )
    .argument("<run_id>", "the promotion's run id (`gpu-canary promotions list`)")
    .option("--wait <SECONDS>", "KLR_STATE_URL: wait this long for a fleet maintenance slot (default 0: refused at once, exit 3)")
    .addHelpText(
      "after",
      `${examples(["gpu-canary apply r-20261203T031200-a1b2c3", "gpu-canary apply r-20261203T031200-a1b2c3 --json | jq .status"])}
Exit codes: 0 applied and verified, 1 verification failed (production put back on its previous settings), 2 unknown promotion or KLR_VLLM_CONFIG unset, 3 refused by a safety gate, 4 error; 128+N after signal N (previous settings restored first).`,
    )
    .action(
      run(async (command) => {
        const { runApply } = await import("./commands/apply.ts");
        return runApply(command.args[0] ?? "", globals(command), io);
      }),
    );

  program
    .command("rollback")
    .description("go back to the settings applied before the current ones, gated and verified as an apply")
    .option("--wait <SECONDS>", "KLR_STATE_URL: wait this long for a fleet maintenance slot (default 0: refused at once, exit 3)")
    .addHelpText(
      "after",
      `${examples(["gpu-canary rollback", "gpu-canary rollback --json"])}
Exit codes: as apply's; 3 also when no earlier settings are recorded.`,
    )
    .action(
      run(async (command) => {
        const { runRollback } = await import("./commands/apply.ts");
        return runRollback(globals(command), io);
      }),
    );

  const fleet = program
    .command("fleet")
    .description("KLR_STATE_URL: the fleet's shared PostgreSQL — its schema, its hosts and maintenance slots")
    .addHelpText(
      "after",
      `${examples(["gpu-canary fleet init", "gpu-canary fleet status", "gpu-canary fleet release gpu-b --force --reason 'host is dead'"])}
Exit codes: 0 ok, 2 KLR_STATE_URL unset or usage, 3 database unreachable or schema missing or newer, 4 database refuses the login.`,
    );
  fleet
    .command("init")
    .description("create or migrate the fleet's schema; idempotent, safe from every host at once")
    .addHelpText("after", examples(["gpu-canary fleet init", "gpu-canary fleet init --json"]))
    .action(
      run(async (command) => {
        const { runFleetInit } = await import("./commands/fleet.ts");
        return runFleetInit(globals(command), io);
      }),
    );
  fleet
    .command("status")
    .description(
      "every host (last seen, in maintenance, budget used tonight, applied settings, last run and verdict, pending promotions, open intents), the maintenance slots (holder, run, since, renewing or stale), the fleet's pending promotions and open intents, this host's budget tonight",
    )
    .addHelpText(
      "after",
      examples([
        "gpu-canary fleet status",
        "gpu-canary fleet status --json | jq '.slots'",
        "gpu-canary fleet status --json | jq '.hosts[] | {host_id, applied, last_run}'",
        "gpu-canary fleet status --json | jq '.open_intents'",
      ]),
    )
    .action(
      run(async (command) => {
        const { runFleetStatus } = await import("./commands/fleet.ts");
        return runFleetStatus(globals(command), io);
      }),
    );
  fleet
    .command("release")
    .description("free every maintenance slot a host holds (a dead host's); audited; needs --force")
    .argument("<host>", "the host id (KLR_HOST_ID) whose slots are freed, as `fleet status` names it")
    .option("--force", "really release: the host's run, if it still lives, is fenced out at its next step")
    .option("--reason <TEXT>", "why, recorded in the audit trail")
    .addHelpText("after", examples(["gpu-canary fleet release gpu-b --force --reason 'gpu-b is powered off'"]))
    .action(
      run(async (command) => {
        const { runFleetRelease } = await import("./commands/fleet.ts");
        return runFleetRelease(command.args[0] ?? "", globals(command), io);
      }),
    );
  addRolloutCommands(fleet, run, globals, io);

  program
    .command("observe")
    .description("scan vLLM log lines for out-of-memory events: one line per event; creates intents unless --dry-run")
    .option("--from <FILE>", "the log file to scan, or - for standard input")
    .option("--dry-run", "report the events, create no intents")
    .option("--subsystem <NAME>", "the subsystem the intents name (default: the first of KLR_SUBSYSTEMS)")
    .addHelpText(
      "after",
      examples([
        "gpu-canary observe --from /var/log/vllm.log --dry-run",
        "journalctl -u vllm.service --since today -o cat | gpu-canary observe --from - --json",
      ]),
    )
    .action(
      run(async (command) => {
        const { runObserve } = await import("./commands/tuning.ts");
        return runObserve(globals(command), io);
      }),
    );

  program
    .command("tune")
    .description("run the tuning runner once: on --intent FILE, else on the oldest pending intent")
    .option("--intent <FILE>", "an intent file (a pending one is claimed; another is queued first)")
    .option("--dry-run", "screen and rank the candidates only: no canary")
    .addHelpText(
      "after",
      `${examples(["gpu-canary tune --dry-run", "gpu-canary tune --intent ./manual-intent.json --json"])}
Exit codes: 0 promoted or ranked (or nothing to do), 1 no candidate fits or the canary failed, 3 refused (a deferred intent waits for the window), 4 error.`,
    )
    .action(
      run(async (command) => {
        const { runTune } = await import("./commands/tuning.ts");
        return runTune(globals(command), io);
      }),
    );

  program
    .command("demo")
    .description("walk through gpu-canary's rules on a temporary KLR_HOME, touching nothing real")
    .option("--keep", "keep the temporary KLR_HOME and print where it is")
    .addHelpText("after", examples(["gpu-canary demo", "gpu-canary demo --keep"]))
    .action(
      run(async (command) => {
        const { runDemo } = await import("./commands/demo.ts");
        return runDemo(globals(command), io);
      }),
    );

  // Every command takes --json and --debug after its name (positional options keep
  // `lock run -- CMD --json` for the command).
  const addCommon = (command: Command) => {
    for (const sub of command.commands) {
      sub.option("--json", "print JSON on stdout").option("--debug", "show stack traces of errors");
      addCommon(sub);
    }
  };
  addCommon(program);
  return program;
}

/** Parse and run; the exit code of the contract (commander's own errors are usage errors). */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  let exitCode: number = EXIT.ok;
  const program = createProgram(io, (code) => (exitCode = code));
  try {
    await program.parseAsync([...argv], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here with exit code 0.
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    throw error;
  }
  return exitCode;
}
