import type { Dispatcher } from "undici";
import * as z from "zod";
import { CanaryLoadError } from "./errors.ts";

const tokens = (what: string) =>
  z
    .number({ error: `${what} must be a number of tokens` })
    .int(`${what} must be a whole number`)
    .min(1, `${what} must be at least 1`);

export const requestShapeSchema = z.object({ promptTokens: tokens("promptTokens"), outputTokens: tokens("outputTokens") });

export const loadOptionsSchema = z
  .object({
    /** the canary's vLLM, e.g. http://127.0.0.1:8001 */
    baseUrl: z.url({ protocol: /^https?$/, error: "baseUrl must be an http(s) URL such as http://127.0.0.1:8001" }),
    /** sent as a bearer token on /v1/* (vLLM's --api-key) */
    apiKey: z.string().min(1).optional(),
    /** the served model's name; asked once from /v1/models when not given */
    model: z.string().min(1).optional(),
    /** steady requests in flight */
    concurrency: z.number().int().min(1, "concurrency must be at least 1").max(4096, "concurrency above 4096 is not a canary's load"),
    promptTokens: tokens("promptTokens"),
    outputTokens: tokens("outputTokens"),
    /** how long steady requests keep starting */
    durationSeconds: z.number().positive("durationSeconds must be above 0").max(3600, "durationSeconds above 3600 is not a canary's load"),
    /** the steady requests' first starts spread evenly over this many seconds (as production's arrive one by one), extras after it (default 0: all at once) */
    rampUpSeconds: z.number().min(0, "rampUpSeconds must be 0 or more").default(0),
    /** from runLoad's call: past it, requests still in flight are stopped (default durationSeconds + 30) */
    deadlineSeconds: z.number().positive().optional(),
    /** steady requests keep starting past durationSeconds until this many started (a verdict needs them; the deadline still bounds it) */
    minRequests: z.number().int().min(0, "minRequests must be 0 or more").default(0),
    /** requests started in all, extras included */
    maxRequests: z.number().int().min(1, "maxRequests must be at least 1").default(100_000),
    /** started once each, with the steady load, e.g. one request at max_model_len */
    extra: z.array(requestShapeSchema).default([]),
    /** skip the calibration request: tokens per word already known (from an earlier load on the same model) */
    tokensPerWord: z.number().positive().optional(),
    /** the prompts' random words; a fixed seed sends the same prompts again */
    seed: z.number().int().optional(),
    /** bound for the model lookup and the calibration, each (default 30 s) */
    setupTimeoutMs: z.number().int().positive().default(30_000),
  })
  .check((ctx) => {
    const o = ctx.value;
    if (o.deadlineSeconds !== undefined && o.deadlineSeconds < o.durationSeconds)
      ctx.issues.push({
        code: "custom",
        input: o.deadlineSeconds,
        path: ["deadlineSeconds"],
        message: `deadlineSeconds (${o.deadlineSeconds}) must be at least durationSeconds (${o.durationSeconds})`,
      });
    if (o.rampUpSeconds > o.durationSeconds)
      ctx.issues.push({
        code: "custom",
        input: o.rampUpSeconds,
        path: ["rampUpSeconds"],
        message: `rampUpSeconds (${o.rampUpSeconds}) must be at most durationSeconds (${o.durationSeconds})`,
      });
    if (o.minRequests > o.maxRequests)
      ctx.issues.push({
        code: "custom",
        input: o.minRequests,
        path: ["minRequests"],
        message: `minRequests (${o.minRequests}) must be at most maxRequests (${o.maxRequests})`,
      });
    if (o.extra.length > o.maxRequests)
      ctx.issues.push({
        code: "custom",
        input: o.extra.length,
        path: ["extra"],
        message: `${o.extra.length} extra requests do not fit in maxRequests (${o.maxRequests})`,
      });
  });

export type LoadOptionsInput = z.input<typeof loadOptionsSchema>;
export type LoadSettings = z.output<typeof loadOptionsSchema>;
export type RequestShape = z.infer<typeof requestShapeSchema>;

/** What runLoad takes: the settings above plus what a caller injects. */
export interface LoadOptions extends LoadOptionsInput {
  signal?: AbortSignal;
  /** undici dispatcher (default: an Agent of runLoad's own, closed when it ends) */
  dispatcher?: Dispatcher;
  /** monotonic milliseconds */
  now?: () => number;
  /** called once, just before the first `extra` request starts: a caller reads the server's own numbers of the steady load alone */
  onExtrasStarting?: () => void;
}

export function parseLoadOptions(input: LoadOptionsInput): LoadSettings {
  const parsed = loadOptionsSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "options"}: ${i.message}`);
  throw new CanaryLoadError("LOAD_BAD_OPTIONS", `the load's options are not usable: ${problems.join("; ")}`);
}
