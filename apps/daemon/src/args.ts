import { readFileSync } from "node:fs";
import { Command, CommanderError } from "commander";

/**
 * The version in the package.json one level up: this package's from src/ and dist/; in the CLI's bundle
 * (bundle/lib/, where gpu-canaryd ships), bundle/package.json, the CLI package's version.
 */
export const VERSION: string = (() => {
  const parsed: unknown = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  return typeof parsed === "object" && parsed !== null && "version" in parsed && typeof parsed.version === "string"
    ? parsed.version
    : "unknown";
})();

/**
 * gpu-canaryd's command line: it takes no arguments (its settings are KLR_* variables), but
 * `--help` and `--version` answer and exit instead of starting a daemon that, in canary mode,
 * would stop production on the next out-of-memory line. Returns "run", or the exit code.
 */
export function parseDaemonArgs(
  argv: readonly string[],
  out: { stdout: (text: string) => void; stderr: (text: string) => void },
): "run" | number {
  const program = new Command("gpu-canaryd")
    .description(
      "Watch vLLM's log for out-of-memory events and run gpu-canary's tuning loop by itself; serve its HTTP API on KLR_DAEMON_LISTEN.",
    )
    .version(VERSION, "-V, --version")
    .exitOverride()
    .configureOutput({ writeOut: out.stdout, writeErr: out.stderr })
    .showHelpAfterError("(run with --help for usage)")
    .addHelpText(
      "after",
      `
Settings come from the environment and $KLR_HOME/.kloros_env (see \`gpu-canary config\`), not from flags.
SIGTERM or SIGINT ends a run in progress safely (production restored), then exits 0.

Examples:
  $ KLR_CANARY_MODE=predictive gpu-canaryd
  $ systemctl start gpu-canaryd      # contrib/gpu-canaryd.service
  $ curl -s localhost:9012/status | jq .budget

Exit codes: 0 stopped cleanly, 2 usage or settings error, 4 needs an operator.`,
    );
  try {
    program.parse([...argv], { from: "user" });
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    throw error;
  }
  return "run";
}
