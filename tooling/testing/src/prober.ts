import { request } from "node:http";

/** One probe as a client saw it: when it was sent, when it ended, whether a completion came back. */
export interface Probe {
  sentAt: number;
  doneAt: number;
  ok: boolean;
}

const PERIOD_MS = 100;
const PROBE_TIMEOUT_MS = 1000;

/**
 * POST one completion on a fresh connection. No keep-alive: a pooled socket that the server closed
 * between two probes would fail a probe for a reason no client of a restarted server cares about.
 */
function probeOnce(url: URL, body: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: "/v1/completions",
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        timeout: PROBE_TIMEOUT_MS,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode === 200));
        res.on("error", () => resolve(false));
      },
    );
    req.on("timeout", () => req.destroy(new Error("probe timed out")));
    req.on("error", () => resolve(false));
    req.end(body);
  });
}

/** A client of production that sends a completion every 100 ms until stopped. */
export class Prober {
  readonly probes: Probe[] = [];
  private running = true;
  private readonly loop: Promise<void>;

  /** `model`: name it in each request, as a client of a vLLM before 0.8 must */
  constructor(baseUrl: string, model?: string) {
    this.loop = this.run(new URL(baseUrl), JSON.stringify({ prompt: "ping", max_tokens: 1, ...(model ? { model } : {}) }));
  }

  private async run(url: URL, body: string): Promise<void> {
    while (this.running) {
      const sentAt = Date.now();
      const ok = await probeOnce(url, body);
      this.probes.push({ sentAt, doneAt: Date.now(), ok });
      const wait = sentAt + PERIOD_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /** Whether a probe sent after `since` got a completion. */
  servedSince(since: number): boolean {
    return this.probes.some((p) => p.ok && p.sentAt >= since);
  }

  async stop(): Promise<Probe[]> {
    this.running = false;
    await this.loop;
    return this.probes;
  }
}

export interface Outage {
  /** from the first failed probe to the first successful one after it; 0 when none failed */
  seconds: number;
  /** the outage had not ended when probing stopped */
  open: boolean;
  /** how long it had lasted when the signal was sent (null: it had not begun, or was over) */
  downAtSignal: number | null;
  /** failed stretches after the first one (a production that came back and went again) */
  laterOutages: number;
}

/** The outage a client saw, by the brief's definition: first failure to the first success after it. */
export function outageOf(probes: readonly Probe[], signalAt: number): Outage {
  const first = probes.findIndex((p) => !p.ok);
  if (first < 0) return { seconds: 0, open: false, downAtSignal: null, laterOutages: 0 };
  const start = probes[first]?.sentAt ?? 0;
  const back = probes.findIndex((p, i) => i > first && p.ok);
  const end = back < 0 ? (probes.at(-1)?.doneAt ?? start) : (probes[back]?.doneAt ?? start);
  let laterOutages = 0;
  for (let i = back + 1; back >= 0 && i < probes.length; i += 1) {
    if (!probes[i]?.ok && probes[i - 1]?.ok) laterOutages += 1;
  }
  const downAtSignal = start <= signalAt && (back < 0 || end > signalAt) ? (signalAt - start) / 1000 : null;
  return { seconds: (end - start) / 1000, open: back < 0, downAtSignal, laterOutages };
}

/**
 * Seconds from the signal until production served again for good (a success with no failure
 * after it); 0 when it served at the signal and no probe failed after it; null when it was not
 * serving at the end.
 */
export function servingAgainAfter(probes: readonly Probe[], signalAt: number): number | null {
  // From the last probe sent before the signal: it tells whether production served at that moment.
  const from = Math.max(
    0,
    probes.findLastIndex((p) => p.sentAt < signalAt),
  );
  const after = probes.slice(from);
  const lastFail = after.findLastIndex((p) => !p.ok);
  if (lastFail < 0) return 0;
  const back = after[lastFail + 1];
  return back ? Math.max(0, back.doneAt - signalAt) / 1000 : null;
}
