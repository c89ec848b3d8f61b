import { type AuditLine, auditLineSchema } from "./events.ts";

export interface ParsedChunk {
  events: AuditLine[];
  /** bytes of a last line without its newline yet (a writer may be mid-way) */
  rest: string;
}

/**
 * Parse JSONL text. A corrupt line is skipped with a warning naming file and line; a final
 * line without a newline is handed back as `rest` for the next read.
 */
export function parseLines(text: string, where: string, warn: (message: string) => void, firstLine = 1): ParsedChunk {
  const lines = text.split("\n");
  const rest = lines.pop() ?? "";
  const events: AuditLine[] = [];
  lines.forEach((line, index) => {
    if (line.trim() === "") return;
    const parsed = parseLine(line);
    if (parsed) events.push(parsed);
    else warn(`${where}:${firstLine + index}: skipped a corrupt audit line`);
  });
  return { events, rest };
}

function parseLine(line: string): AuditLine | null {
  try {
    const result = auditLineSchema.safeParse(JSON.parse(line));
    return result.success ? result.data : null;
  } catch {
    return null;
  }
}
