/**
 * The simulated vLLM's scheduler: a KV cache of a fixed number of tokens shared by the running
 * requests, stepped like vLLM's engine loop. Each step every running request holds its prompt and
 * the tokens it generated so far, plus one slot for the token it is about to generate. When that
 * would exceed the capacity the newest running request is preempted (vLLM V1's recompute
 * preemption: its KV is dropped, it goes back to the front of the waiting queue and later prefills
 * again), and the counter behind `vllm:num_preemptions_total` goes up. A request running alone is
 * never preempted, so a request larger than the cache still ends instead of looping.
 *
 * Timing (documented in the README): one decode step takes tokenLatencyMs × (1 + slowdown ×
 * (running − 1)), so a lone request sees exactly the configured token latency and every extra
 * request in the batch slows all of them; a step that prefills (a new request, or one resumed
 * after a preemption) takes prefillMsPer1kTokens more per thousand tokens it prefills.
 */
export interface SimEngineOptions {
  /** KV-cache capacity in tokens */
  capacityTokens: number;
  tokenLatencyMs: number;
  /** k in tokenLatency × (1 + k × (running − 1)) */
  slowdownPerRunning: number;
  prefillMsPer1kTokens: number;
  /** vLLM's max_num_seqs: at most this many requests run at once */
  maxNumSeqs: number;
  /** told each step with the KV usage it reached (the process dies past SIM_OOM_AT_USAGE) */
  onUsage?: (usage: number) => void;
}

export interface SequenceEvents {
  /** a token was generated (the first one ends the prefill) */
  onToken: () => void;
}

interface Sequence {
  prompt: number;
  target: number;
  generated: number;
  /** needs a prefill before its next token: new, or resumed after a preemption */
  prefill: boolean;
  events: SequenceEvents;
  done: () => void;
}

export interface EngineStats {
  running: number;
  waiting: number;
  /** tokens held in the KV cache now over its capacity, 0…1 */
  usage: number;
  preemptions: number;
}

export class SimEngine {
  readonly capacity: number;
  private readonly running: Sequence[] = [];
  private readonly waiting: Sequence[] = [];
  private preemptions = 0;
  private usage = 0;
  private stepping = false;

  constructor(private readonly options: SimEngineOptions) {
    this.capacity = Math.max(1, Math.floor(options.capacityTokens));
  }

  stats(): EngineStats {
    return { running: this.running.length, waiting: this.waiting.length, usage: this.usage, preemptions: this.preemptions };
  }

  /** Queue a request; resolves once it generated `target` tokens or was cancelled. */
  submit(prompt: number, target: number, events: SequenceEvents, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const sequence: Sequence = { prompt, target: Math.max(0, target), generated: 0, prefill: true, events, done: resolve };
      if (sequence.target === 0) return resolve();
      const cancel = () => {
        this.remove(sequence);
        resolve();
      };
      if (signal?.aborted) return cancel();
      signal?.addEventListener("abort", cancel, { once: true });
      this.waiting.push(sequence);
      void this.loop();
    });
  }

  private remove(sequence: Sequence) {
    for (const list of [this.running, this.waiting]) {
      const at = list.indexOf(sequence);
      if (at >= 0) list.splice(at, 1);
    }
    this.usage = this.held() / this.capacity;
  }

  /** Tokens the running requests need in the cache for their next token. */
  private needed(): number {
    return this.running.reduce((sum, s) => sum + s.prompt + s.generated + 1, 0);
  }

  private held(): number {
    return Math.min(
      this.capacity,
      this.running.reduce((sum, s) => sum + s.prompt + s.generated, 0),
    );
  }

  private schedule(): number {
    // vLLM admits waiting requests in order while their blocks fit, up to max_num_seqs.
    while (this.waiting.length > 0 && this.running.length < this.options.maxNumSeqs) {
      const next = this.waiting[0] as Sequence;
      if (this.running.length > 0 && this.needed() + next.prompt + next.generated + 1 > this.capacity) break;
      this.waiting.shift();
      this.running.push(next);
    }
    // Growing by one token each may no longer fit: the newest request gives its blocks back.
    while (this.running.length > 1 && this.needed() > this.capacity) {
      const victim = this.running.pop() as Sequence;
      victim.prefill = true;
      this.waiting.unshift(victim);
      this.preemptions += 1;
    }
    this.usage = Math.min(1, this.needed() / this.capacity);
    this.options.onUsage?.(this.usage);
    let prefillTokens = 0;
    for (const s of this.running) if (s.prefill) prefillTokens += s.prompt + s.generated;
    const { tokenLatencyMs, slowdownPerRunning, prefillMsPer1kTokens } = this.options;
    return tokenLatencyMs * (1 + slowdownPerRunning * (this.running.length - 1)) + (prefillTokens / 1000) * prefillMsPer1kTokens;
  }

  private async loop() {
    if (this.stepping) return;
    this.stepping = true;
    try {
      while (this.running.length + this.waiting.length > 0) {
        const stepMs = this.schedule();
        const batch = [...this.running];
        await new Promise((resolve) => setTimeout(resolve, stepMs));
        for (const s of batch) {
          // Cancelled or preempted meanwhile: no token from this step.
          if (!this.running.includes(s)) continue;
          s.prefill = false;
          s.generated += 1;
          s.events.onToken();
          if (s.generated >= s.target) {
            this.remove(s);
            s.done();
          }
        }
      }
      this.usage = 0;
    } finally {
      this.stepping = false;
    }
  }
}
