import { type Intent, type IntentState, type IntentStoreDeps, createIntentStore } from "./intents.ts";

/** An intent file's JSON plus `state`: the folder it is in. */
export type IntentDoc = Intent & { state: IntentState };

export interface IntentDocsOptions {
  now?: () => Date;
  /** processed and failed intents finished (or, without an outcome, created) longer ago than this are left out (default 7 days) */
  finishedWithinMs?: number;
}

const FINISHED_WITHIN_MS = 7 * 86_400_000;

/**
 * This host's intents with their state, as the fleet publishers copy them (`syncIntents`). To bound
 * the cost for a host with a long history, pending and processing intents are always read, processed
 * and failed ones only when finished within the last 7 days: older ones stay in the fleet's copy as
 * they were last published. Read through the store's own `list`, so an unreadable file is left out
 * (an unreadable pending one goes to failed/, as the worker would move it).
 */
export async function listIntentDocs(layout: IntentStoreDeps["layout"], options: IntentDocsOptions = {}): Promise<IntentDoc[]> {
  const store = createIntentStore({ layout, subsystems: [] });
  const since = (options.now ?? (() => new Date()))().getTime() - (options.finishedWithinMs ?? FINISHED_WITHIN_MS);
  const docs: IntentDoc[] = [];
  for (const state of ["pending", "processing"] as const) {
    for (const { intent } of await store.list(state)) docs.push({ ...intent, state });
  }
  for (const state of ["processed", "failed"] as const) {
    for (const { intent } of await store.list(state)) {
      const at = Date.parse(intent.outcome?.finished_at ?? intent.created_at);
      // an unparsable date is kept: better copied once more than silently never
      if (!(at < since)) docs.push({ ...intent, state });
    }
  }
  return docs;
}
