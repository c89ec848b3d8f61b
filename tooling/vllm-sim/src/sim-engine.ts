/**
 * The simulated vLLM's scheduler: a KV cache of a fixed number of tokens shared by the running
 * requests, stepped like vLLM V1's engine loop (vllm/v1/core/sched/scheduler.py, reduced). Each
 * step has a budget of max_num_batched_tokens: running requests are served first, oldest first —
 * one token each when decoding, a chunk of their prompt when prefilling (chunked prefill) — and
 * each must find room in the cache for the tokens it computes. A request that finds none makes the
 * newest running request give its KV back (V1's recompute preemption: back to the front of the
 * waiting queue, its prompt and output computed again later), counted behind
 * `vllm:num_preemptions_total`. Only when nothing was preempted are waiting requests admitted, in
 * order, while their next chunk fits. A request alone in the cache always gets what it needs, so a
 * request larger than the cache still ends instead of looping.
 *
 * Timing (documented in the README): a step takes tokenLatencyMs × (1 + slowdown × (scheduled −
 * 1)), so a lone request sees exactly the configured token latency and every extra request in the
 * batch slows all of them, plus prefillMsPer1kTokens per thousand prompt tokens it computes.
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
  /** vLLM's max_num_batched_tokens: the tokens one step computes */
  maxNumBatchedTokens: number;
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
  /** tokens whose KV the cache holds: the context is prompt + generated */
  computed: number;
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
      const sequence: Sequence = {
        prompt: Math.max(1, prompt),
        target: Math.max(0, target),
        generated: 0,
        computed: 0,
        events,
        done: resolve,
      };
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
    this.usage = Math.min(1, this.held() / this.capacity);
  }

  private held(): number {
    return this.running.reduce((sum, s) => sum + s.computed, 0);
  }

  /** One step's plan: the tokens each scheduled request computes, and how long the step takes. */
  private schedule(): { plan: Map<Sequence, number>; stepMs: number } {
    const plan = new Map<Sequence, number>();
    let budget = this.options.maxNumBatchedTokens;
    let free = this.capacity - this.held();
    let preempted = false;
    const pending = (s: Sequence) => s.prompt + s.generated - s.computed;
    for (let i = 0; i < this.running.length && budget > 0;) {
      const s = this.running[i] as Sequence;
      const need = Math.min(pending(s), budget);
      if (need <= free || this.running.length === 1) {
        plan.set(s, need);
        free -= need;
        budget -= need;
        i += 1;
        continue;
      }
      const victim = this.running.pop() as Sequence;
      free += victim.computed;
      victim.computed = 0;
      plan.delete(victim);
      this.waiting.unshift(victim);
      this.preemptions += 1;
      preempted = true;
    }
    while (!preempted && budget > 0 && this.waiting.length > 0 && this.running.length < this.options.maxNumSeqs) {
      const s = this.waiting[0] as Sequence;
      const need = Math.min(pending(s), budget);
      if (need > free && this.running.length > 0) break;
      this.waiting.shift();
      this.running.push(s);
      plan.set(s, need);
      free -= need;
      budget -= need;
    }
    this.usage = Math.min(1, Math.max(0, this.capacity - free) / this.capacity);
    this.options.onUsage?.(this.usage);
    let prefillTokens = 0;
    for (const tokens of plan.values()) if (tokens > 1) prefillTokens += tokens;
    const { tokenLatencyMs, slowdownPerRunning, prefillMsPer1kTokens } = this.options;
    const stepMs = tokenLatencyMs * (1 + slowdownPerRunning * Math.max(0, plan.size - 1)) + (prefillTokens / 1000) * prefillMsPer1kTokens;
    return { plan, stepMs };
  }

  private async loop() {
    if (this.stepping) return;
    this.stepping = true;
    try {
      while (this.running.length + this.waiting.length > 0) {
        const { plan, stepMs } = this.schedule();
        await new Promise((resolve) => setTimeout(resolve, stepMs));
        for (const [s, tokens] of plan) {
          // Cancelled or preempted meanwhile: nothing from this step.
          if (!this.running.includes(s)) continue;
          s.computed += tokens;
          // The whole context computed: the step samples the next token.
          if (s.computed < s.prompt + s.generated) continue;
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
