/** Markup already escaped: what `html` returns, and the only value it inserts as it is. */
export class SafeHtml {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  toString(): string {
    return this.text;
  }
}

const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** The one escape of the page: text and attribute values alike (quotes included). */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);
}

/** One interpolated value: markup built by `html` as it is, a list joined, anything else escaped. */
function piece(value: unknown): string {
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(piece).join("");
  if (value === null || value === undefined || value === false) return "";
  if (typeof value === "string") return escapeHtml(value);
  if (typeof value === "number" || typeof value === "boolean") return escapeHtml(String(value));
  return escapeHtml(JSON.stringify(value) ?? "");
}

/** A template of the page: every `${value}` is escaped unless it is markup this same function built. */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0] ?? "";
  values.forEach((value, i) => (out += piece(value) + (strings[i + 1] ?? "")));
  return new SafeHtml(out);
}
