/**
 * Prompts of plain English words, drawn at random per request. Random from the first word on
 * because vLLM caches prompt prefixes by default: prompts sharing a start would share KV-cache
 * blocks, and the load would take less memory than production's distinct prompts do.
 * The words are short and common, one token each in most tokenizers, so tokens per word stays
 * steady from prompt to prompt and the calibration carries over.
 */
const VOCABULARY = (
  "time year people way day man thing woman life child world school state family student group country problem hand part " +
  "place case week company system program question work government number night point home water room mother area money " +
  "story fact month lot right study book eye job word business issue side kind head house service friend father power hour " +
  "game line end member law car city community name team minute idea kid body back parent face others level office door " +
  "health person art war history party result change morning reason research girl guy moment air teacher force education " +
  "foot boy age policy music market sense nation plan college interest death experience effect class control care field " +
  "development role effort rate heart drug show leader light voice wife police mind price report decision son view " +
  "relationship town road arm difference value building action model season society tax director position player record " +
  "paper space ground form event official matter center couple site project activity star table need court oil situation " +
  "cost industry figure street image phone data picture practice piece land product doctor wall patient worker news test " +
  "movie north love support technology step baby computer type attention film tree source organization hair window evidence"
).split(" ");

/** A seeded generator (mulberry32): the same seed gives the same prompt, so tests can name what was sent. */
export function randomSource(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function buildPrompt(words: number, random: () => number): string {
  if (!Number.isInteger(words) || words < 1) throw new RangeError(`a prompt needs at least one word, got ${words}`);
  const out = new Array<string>(words);
  for (let i = 0; i < words; i += 1) out[i] = VOCABULARY[Math.floor(random() * VOCABULARY.length)] ?? "time";
  return out.join(" ");
}
