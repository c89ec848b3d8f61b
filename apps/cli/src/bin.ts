import { homedir } from "node:os";
import { runCli } from "./program.ts";

// The one place that touches the real process: argv, env, stdio and the exit code.
const io = {
  stdout: (text: string) => void process.stdout.write(text),
  stderr: (text: string) => void process.stderr.write(text),
  env: process.env,
  homeDir: homedir(),
  now: () => new Date(),
  isTTY: process.stdout.isTTY,
};

process.exitCode = await runCli(process.argv.slice(2), io);
