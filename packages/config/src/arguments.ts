import { parse } from "shell-quote";

/**
 * A command line split into arguments as a shell would split it (quotes and backslashes), for
 * settings gpu-canary runs itself with an argument array, never through a shell: anything a shell
 * would do more with — pipes, redirections, `;`, `&&`, globs, variables, comments — or a quote left
 * open is refused, so a typo is a settings error at load, not a canary that fails after production
 * was stopped for it.
 */
export function splitArguments(text: string): { ok: true; value: string[] } | { ok: false; expected: string } {
  const expected = (why: string) => ({
    ok: false as const,
    expected: `arguments split like a shell splits them, with nothing else a shell would do (${why}); use a wrapper script for that`,
  });
  const open = openQuote(text);
  if (open) return expected(`a ${open} quote is never closed`);
  // A variable becomes a marker object, not shell-quote's silent empty string.
  const words: string[] = [];
  for (const part of parse(text, (name) => ({ op: `$${name}` }) as unknown as string)) {
    if (typeof part === "string") {
      words.push(part);
      continue;
    }
    const what = "op" in part ? (part.op === "glob" ? `the glob ${part.pattern}` : `\`${part.op}\``) : "a comment";
    return expected(`found ${what}`);
  }
  return { ok: true, value: words };
}

/** The kind of quote still open at the end of the text, if any. */
function openQuote(text: string): "single" | "double" | null {
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = null;
    } else if (c === "\\") i += 1;
    else if (quote === '"') {
      if (c === '"') quote = null;
    } else if (c === "'" || c === '"') quote = c;
  }
  return quote === "'" ? "single" : quote === '"' ? "double" : null;
}
