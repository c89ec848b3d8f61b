/** What a command may touch of the outside world; only bin.ts builds the real one. */
export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** the process environment, read once by bin.ts */
  env: Readonly<Record<string, string | undefined>>;
  homeDir: string;
  now: () => Date;
  /** stdout is a terminal */
  isTTY: boolean;
  /** stderr is a terminal; when not (cron, systemd, a pipe), long commands log timestamped steps there */
  stderrIsTTY: boolean;
  /** subscribe to SIGINT/SIGTERM; returns the unsubscribe */
  onSignal: (handler: (signal: NodeJS.Signals) => void) => () => void;
  /** all of standard input (for `observe --from -`); absent where there is none */
  readStdin?: () => Promise<string>;
}

export interface GlobalOptions {
  json?: boolean;
  debug?: boolean;
}
