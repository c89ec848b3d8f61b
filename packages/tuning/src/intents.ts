import { randomBytes } from "node:crypto";
import { mkdir, readdir, rename } from "node:fs/promises";
import { basename, join } from "node:path";
import type { Layout } from "@gpu-canary/config";
import { GpuCanaryError, errnoCode } from "@gpu-canary/errors";
import { candidateSchema } from "@gpu-canary/spica-evaluator";
import { readJsonState, writeJsonAtomic } from "@gpu-canary/state-file";
import * as z from "zod";

export const INTENT_KINDS = ["oom_runtime", "oom_kv_cache", "oom_max_model_len", "oom_startup_free_memory", "manual"] as const;
export type IntentKind = (typeof INTENT_KINDS)[number];

/** What a caller submits (a file's body, POST /intents): nothing else is accepted. */
export const intentInputSchema = z.strictObject({
  kind: z.enum(INTENT_KINDS),
  subsystem: z.string().min(1).max(100),
  evidence: z.string().min(1).max(4000),
  candidate: candidateSchema.optional(),
});
export type IntentInput = z.infer<typeof intentInputSchema>;

/** An intent file: the input plus `id` and `created_at`; the outcome is added when it is worked. */
export const intentSchema = z.looseObject({
  ...intentInputSchema.shape,
  id: z.string().regex(/^[A-Za-z0-9_.-]+$/),
  created_at: z.string(),
  outcome: z.looseObject({ status: z.string(), reason: z.string(), finished_at: z.string() }).optional(),
});
export type Intent = z.infer<typeof intentSchema>;

export type IntentState = "pending" | "processing" | "processed" | "failed";

export interface ClaimedIntent {
  intent: Intent;
  /** its file under processing/ */
  path: string;
}

export interface IntentStoreDeps {
  layout: Pick<Layout, "intentsDir" | "intentsProcessing" | "intentsProcessed" | "intentsFailed">;
  subsystems: readonly string[];
  now?: () => Date;
  /** an intent like one already queued or worked within this time is merged into it (default 1 h) */
  cooldownMs?: number;
  /** pending intents older than this expire to failed/ (default 3 days) */
  maxAgeMs?: number;
}

export class IntentError extends GpuCanaryError {
  constructor(message: string, hint: string) {
    super("INTENT_INVALID", message, { kind: "usage", hint });
  }
}

/** Check a submitted intent; a wrong subsystem or a malformed body is an IntentError naming the field. */
export function parseIntentInput(value: unknown, subsystems: readonly string[]): IntentInput {
  const parsed = intentInputSchema.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join(".") || "intent"}: ${i.message}`);
    throw new IntentError(
      `the intent is malformed: ${problems.join("; ")}`,
      `an intent is {"kind", "subsystem", "evidence", "candidate"?}; kinds: ${INTENT_KINDS.join(" ")}`,
    );
  }
  if (!subsystems.includes(parsed.data.subsystem)) {
    throw new IntentError(
      `subsystem ${JSON.stringify(parsed.data.subsystem)} is not one of KLR_SUBSYSTEMS (${subsystems.join(", ")})`,
      "add it to KLR_SUBSYSTEMS, or name one of those",
    );
  }
  return parsed.data;
}

/**
 * Intents as files (docs/architecture.md, "Intents"): pending in intents/, claimed by renaming into processing/ (so
 * two workers never work the same one), finished into processed/ or failed/ with the outcome.
 */
export function createIntentStore(deps: IntentStoreDeps) {
  const now = deps.now ?? (() => new Date());
  const cooldownMs = deps.cooldownMs ?? 3600_000;
  const maxAgeMs = deps.maxAgeMs ?? 3 * 86_400_000;
  const dirs: Record<IntentState, string> = {
    pending: deps.layout.intentsDir,
    processing: deps.layout.intentsProcessing,
    processed: deps.layout.intentsProcessed,
    failed: deps.layout.intentsFailed,
  };

  const list = async (state: IntentState): Promise<{ intent: Intent; path: string }[]> => {
    let names: string[];
    try {
      names = (await readdir(dirs[state])).filter((n) => n.endsWith(".json") && !n.startsWith("."));
    } catch (error) {
      if (errnoCode(error) === "ENOENT") return [];
      throw error;
    }
    const out: { intent: Intent; path: string }[] = [];
    for (const name of names) {
      const path = join(dirs[state], name);
      const read = await readJsonState(path, intentSchema);
      if (read.status === "ok") out.push({ intent: read.value, path });
      else if (read.status === "unreadable" && state === "pending") {
        // A hand-written intent that is not one goes to failed/ with the reason, never silently dropped.
        await moveTo(path, "failed").catch(() => undefined);
      }
    }
    return out.sort((a, b) => a.intent.created_at.localeCompare(b.intent.created_at));
  };

  const moveTo = async (path: string, state: IntentState): Promise<string> => {
    await mkdir(dirs[state], { recursive: true });
    const target = join(dirs[state], basename(path));
    await rename(path, target);
    return target;
  };

  return {
    dirs,
    list,
    /**
     * Queue an intent; one like it (kind, subsystem) queued or worked within the cooldown absorbs it —
     * unless it is older than `notBefore` (the last apply: production runs other settings since), or
     * `alone` asks for an intent of its own.
     */
    async create(
      input: IntentInput,
      options: { notBefore?: Date | null; alone?: boolean } = {},
    ): Promise<{ intent: Intent; merged: boolean; path: string }> {
      const at = now();
      const since = options.notBefore?.getTime() ?? Number.NEGATIVE_INFINITY;
      if (input.candidate === undefined && options.alone !== true) {
        const recent = [...(await list("pending")), ...(await list("processing")), ...(await list("processed"))].find(
          (e) =>
            e.intent.kind === input.kind &&
            e.intent.subsystem === input.subsystem &&
            e.intent.candidate === undefined &&
            at.getTime() - Date.parse(e.intent.created_at) < cooldownMs &&
            Date.parse(e.intent.created_at) >= since,
        );
        if (recent) return { intent: recent.intent, merged: true, path: recent.path };
      }
      const id = `i-${at.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "")}-${randomBytes(3).toString("hex")}`;
      const intent: Intent = { ...input, id, created_at: at.toISOString() };
      const path = join(dirs.pending, `${id}.json`);
      await writeJsonAtomic(path, intent);
      return { intent, merged: false, path };
    },
    /** Claim the oldest pending intent (or a given one); null when there is none or another worker won it. */
    async claim(path?: string): Promise<ClaimedIntent | null> {
      const candidates = path ? [path] : (await list("pending")).map((e) => e.path);
      for (const from of candidates) {
        try {
          const target = await moveTo(from, "processing");
          const read = await readJsonState(target, intentSchema);
          if (read.status === "ok") return { intent: read.value, path: target };
          await moveTo(target, "failed");
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw error;
        }
      }
      return null;
    },
    /** Done: the intent with its outcome goes to processed/ or failed/. */
    async finish(claimed: ClaimedIntent, state: "processed" | "failed", outcome: { status: string; reason: string; [k: string]: unknown }) {
      const finished: Intent = { ...claimed.intent, outcome: { ...outcome, finished_at: now().toISOString() } };
      await writeJsonAtomic(claimed.path, finished);
      return moveTo(claimed.path, state);
    },
    /** Not now (the window is closed): back to pending, to wait for the next opening. */
    async release(claimed: ClaimedIntent) {
      return moveTo(claimed.path, "pending");
    },
    /** Pending intents older than the maximum age go to failed/ with the reason. */
    async expire(): Promise<Intent[]> {
      const expired: Intent[] = [];
      for (const entry of await list("pending")) {
        const age = now().getTime() - Date.parse(entry.intent.created_at);
        if (!(age > maxAgeMs)) continue;
        const claimed = await this.claim(entry.path);
        if (!claimed) continue;
        await this.finish(claimed, "failed", {
          status: "expired",
          reason: `not worked within ${Math.round(maxAgeMs / 3600_000)} h of its creation`,
        });
        expired.push(claimed.intent);
      }
      return expired;
    },
    /** Intents a crashed worker left in processing/ go back to pending. */
    async requeueAbandoned(): Promise<number> {
      const stuck = await list("processing");
      for (const entry of stuck) await moveTo(entry.path, "pending");
      return stuck.length;
    },
  };
}

export type IntentStore = ReturnType<typeof createIntentStore>;
