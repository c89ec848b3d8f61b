import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { createSseDecoder } from "./sse.ts";

function decode(chunks: (string | Uint8Array)[]): string[] {
  const out: string[] = [];
  const decoder = createSseDecoder((d) => out.push(d));
  for (const c of chunks) decoder.feed(c);
  decoder.end();
  return out;
}

const VLLM_STREAM =
  'data: {"choices":[{"text":" héllo"}]}\n\n' +
  ": keep-alive comment\n\n" +
  'data: {"choices":[],"usage":{"prompt_tokens":7}}\n\n' +
  "data: [DONE]\n\n";
const EVENTS = ['{"choices":[{"text":" héllo"}]}', '{"choices":[],"usage":{"prompt_tokens":7}}', "[DONE]"];

describe("createSseDecoder", () => {
  it("gives the data of each event vLLM streams, skipping comments", () => {
    expect(decode([VLLM_STREAM])).toEqual(EVENTS);
  });

  it("gives the same events however the bytes are split, even inside a UTF-8 character", () => {
    const bytes = new TextEncoder().encode(VLLM_STREAM);
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 20 }), (cuts) => {
        const points = [0, ...cuts.sort((a, b) => a - b), bytes.length];
        const chunks = points.slice(1).map((end, i) => bytes.slice(points[i], end));
        expect(decode(chunks)).toEqual(EVENTS);
      }),
    );
  });

  it("reads CRLF and lone CR line ends, also when CR and LF arrive apart", () => {
    expect(decode(["data: a\r", "\n\r\ndata: b\r\rdata: c\n", "\n"])).toEqual(["a", "b", "c"]);
  });

  it("joins multi-line data, and ignores event, id and retry fields", () => {
    expect(decode(["event: x\nid: 3\nretry: 5\ndata: one\ndata:two\n\n"])).toEqual(["one\ntwo"]);
  });

  it("drops an event cut before its blank line, as a dropped stream leaves it", () => {
    expect(decode(['data: {"choices":[{"text":"a"}]}\n\ndata: {"choi'])).toEqual(['{"choices":[{"text":"a"}]}']);
  });
});
