import { homedir } from "node:os";
import type { Io } from "./io.ts";
import { runCli } from "./program.ts";

// A reader of our output that went away (a closed pipe: EPIPE) is not a crash of ours: a run in
// progress goes on and unwinds as it would, its lines unread.
process.stdout.on("error", () => undefined);
process.stderr.on("error", () => undefined);

// The one place that touches the real process: argv, env, stdio and the exit code.
const io: Io = {
  stdout: (text: string) => void process.stdout.write(text),
  stderr: (text: string) => void process.stderr.write(text),
  env: process.env,
  homeDir: homedir(),
  now: () => new Date(),
  isTTY: process.stdout.isTTY,
  stderrIsTTY: process.stderr.isTTY,
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString("utf8");
  },
  onSignal: (handler) => {
    const listener = (signal: NodeJS.Signals) => handler(signal);
    process.on("SIGINT", listener);
    process.on("SIGTERM", listener);
    return () => {
      process.off("SIGINT", listener);
      process.off("SIGTERM", listener);
    };
  },
};

process.exitCode = await runCli(process.argv.slice(2), io);
