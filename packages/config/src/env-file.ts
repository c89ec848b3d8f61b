export interface EnvFileEntry {
  value: string;
  line: number;
}

export interface ParsedEnvFile {
  entries: Map<string, EnvFileEntry>;
  /** lines about gpu-canary's own settings (KLR_*) that cannot be read */
  errors: string[];
  /** other lines that cannot be read: the file is shared with the shell (`alias ll=ls`, `PATH+=…`) */
  warnings: string[];
}

const KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * `KEY=value` lines as a shell would source them: `#` comments, blank lines, an optional
 * `export ` prefix, single or double quotes, and a repeated key where the last one wins
 * (the checklist enables canary mode by appending a second KLR_CANARY_MODE line).
 * Unlike dotenv, a line we cannot read is reported with its number, never skipped: an error when
 * it is about a KLR_ setting, else a warning (the file is the shell's too), which ignores the line.
 */
export function parseEnvFile(text: string, file: string): ParsedEnvFile {
  const entries = new Map<string, EnvFileEntry>();
  const errors: string[] = [];
  const warnings: string[] = [];
  const report = (key: string, text: string) => (key.startsWith("KLR_") ? errors : warnings).push(text);
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((rawLine, index) => {
    const lineNo = index + 1;
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) return;
    const body = line.replace(/^export\s+/, "");
    const eq = body.indexOf("=");
    const key = eq < 0 ? body : body.slice(0, eq).trim();
    if (eq < 0 || !KEY.test(key)) {
      const ignored = key.startsWith("KLR_") ? "" : " (not a gpu-canary setting: ignored)";
      report(key, `${file}:${lineNo}: expected KEY=value, got ${JSON.stringify(rawLine)}${ignored}`);
      return;
    }
    const value = unquote(body.slice(eq + 1).trim());
    if (value === null) {
      report(key, `${file}:${lineNo}: ${key} has an unclosed quote${key.startsWith("KLR_") ? "" : " (ignored)"}`);
      return;
    }
    entries.set(key, { value, line: lineNo });
  });
  return { entries, errors, warnings };
}

function unquote(raw: string): string | null {
  const quote = raw[0];
  if (quote === '"' || quote === "'") {
    const close = findClosingQuote(raw, quote);
    if (close < 0) return null;
    const rest = raw.slice(close + 1).trim();
    if (rest !== "" && !rest.startsWith("#")) return null;
    const inner = raw.slice(1, close);
    return quote === "'" ? inner : inner.replace(/\\(["\\$`])/g, "$1").replace(/\\n/g, "\n");
  }
  // Unquoted: a ` #` starts a comment, as in the shell.
  const comment = raw.search(/\s#/);
  return (comment < 0 ? raw : raw.slice(0, comment)).trim();
}

function findClosingQuote(raw: string, quote: string): number {
  for (let i = 1; i < raw.length; i += 1) {
    if (raw[i] === "\\" && quote === '"') {
      i += 1;
      continue;
    }
    if (raw[i] === quote) return i;
  }
  return -1;
}
