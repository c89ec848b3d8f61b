import { Command, CommanderError } from "commander";
import { EXIT } from "@gpu-canary/errors";
import type { GlobalOptions, Io } from "./io.ts";
import { reportError } from "./output.ts";

const examples = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

/**
 * The command line. Commands load their modules when they run, so `window` never pays for
 * what `evaluate` needs (cold start is measured by `pnpm bench`).
 */
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
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      `${examples(["gpu-canary window", "gpu-canary budget --json", "gpu-canary config"])}
Exit codes: 0 ok, 1 checked and not passed, 2 usage or settings error, 3 refused by a safety gate, 4 needs an operator.`,
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
