import { parseDaemonArgs } from "./args.ts";

// --help and --version answer without loading the daemon (nor starting one).
const parsed = parseDaemonArgs(process.argv.slice(2), {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});
if (parsed === "run") {
  const { main } = await import("./main.ts");
  process.exitCode = await main(process.env);
} else process.exitCode = parsed;
