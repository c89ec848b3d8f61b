/**
 * Server-sent events as vLLM streams them (`data: {...}` lines, a blank line between events,
 * `data: [DONE]` at the end), decoded incrementally: a network chunk may end anywhere, even in
 * the middle of a UTF-8 character or between `\r` and `\n`. Only `data` fields matter to vLLM's
 * clients; comments, `event`, `id` and `retry` are skipped.
 */
export function createSseDecoder(onData: (data: string) => void) {
  const decoder = new TextDecoder("utf-8");
  let buffer = "";
  let data: string[] = [];
  let pendingCr = false;

  const line = (text: string) => {
    if (text === "") {
      if (data.length > 0) onData(data.join("\n"));
      data = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    if (field !== "data") return;
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    data.push(value);
  };

  const consume = (text: string) => {
    if (text === "") return;
    let start = 0;
    // a \r\n split between two chunks is one line end
    if (pendingCr && text.charCodeAt(0) === 10) start = 1;
    pendingCr = false;
    for (let i = start; i < text.length; i += 1) {
      const c = text.charCodeAt(i);
      if (c === 10 /* \n */) {
        line(buffer + text.slice(start, i));
        buffer = "";
        start = i + 1;
      } else if (c === 13 /* \r */) {
        line(buffer + text.slice(start, i));
        buffer = "";
        if (text.charCodeAt(i + 1) === 10) i += 1;
        else pendingCr = i + 1 === text.length;
        start = i + 1;
      }
    }
    if (start < text.length) buffer += text.slice(start);
  };

  return {
    feed(chunk: Uint8Array | string) {
      consume(typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true }));
    },
    /** The stream ended: an event not closed by a blank line was cut, and is dropped (as the SSE standard says). */
    end() {
      consume(decoder.decode());
      buffer = "";
      data = [];
    },
  };
}
