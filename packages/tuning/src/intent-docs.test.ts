import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { layoutFor } from "@gpu-canary/config";
import { testdir } from "@gpu-canary/testing";
import { describe, expect, it } from "vitest";
import { listIntentDocs } from "./intent-docs.ts";

const now = () => new Date("2026-12-07T03:00:00Z");

const intent = (id: string, createdAt: string, finishedAt?: string) => ({
  kind: "oom_kv_cache",
  subsystem: "gpu_allocation",
  evidence: "CUDA out of memory",
  id,
  created_at: createdAt,
  ...(finishedAt ? { outcome: { status: "passed", reason: "worked", finished_at: finishedAt } } : {}),
});

async function write(dir: string, doc: Record<string, unknown> | string, name = `${String((doc as { id?: string }).id)}.json`) {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, name), typeof doc === "string" ? doc : JSON.stringify(doc));
}

describe("listIntentDocs", () => {
  it("reads every open intent and the finished ones of the last 7 days, each with the folder it is in", async () => {
    const home = await testdir();
    const layout = layoutFor({ home, modelPath: join(home, "m"), daemonTokenFile: join(home, "t") });
    // open ones are read however old they are
    await write(layout.intentsDir, intent("i-pending", "2026-11-01T00:00:00.000Z"));
    await write(layout.intentsProcessing, intent("i-processing", "2026-12-07T02:00:00.000Z"));
    await write(layout.intentsProcessed, intent("i-recent", "2026-11-20T00:00:00.000Z", "2026-12-01T00:00:00.000Z"));
    await write(layout.intentsProcessed, intent("i-old", "2026-11-20T00:00:00.000Z", "2026-11-29T00:00:00.000Z"));
    await write(layout.intentsFailed, intent("i-failed", "2026-12-06T00:00:00.000Z"));
    await write(layout.intentsFailed, intent("i-failed-old", "2026-11-01T00:00:00.000Z"));
    await write(layout.intentsProcessed, "{ not json", "i-broken.json");

    const docs = await listIntentDocs(layout, { now });
    expect(docs.map((d) => [d.id, d.state])).toEqual([
      ["i-pending", "pending"],
      ["i-processing", "processing"],
      ["i-recent", "processed"],
      ["i-failed", "failed"],
    ]);
    expect(docs[2]).toMatchObject({ kind: "oom_kv_cache", outcome: { status: "passed" } });
  });

  it("answers nothing when this host has no intents folder yet", async () => {
    const home = await testdir();
    const layout = layoutFor({ home, modelPath: join(home, "m"), daemonTokenFile: join(home, "t") });
    expect(await listIntentDocs(layout, { now })).toEqual([]);
  });
});
