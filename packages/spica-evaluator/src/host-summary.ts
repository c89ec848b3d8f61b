import type { Layout } from "@gpu-canary/config";
import { messageOf } from "@gpu-canary/errors";
import { type Applied, readApplied } from "@gpu-canary/vllm-control";
import { type Promotion, listPromotions } from "./promotions.ts";

/** What this host tells its fleet of itself, read from its own files. */
export interface HostSummary {
  /** every readable promotion, as its file holds it (state included) */
  promotions: Promotion[];
  /** promotion files that could not be read: left out, never guessed */
  unreadable: { file: string; reason: string }[];
  /** applied.json, or null before any apply or when it cannot be read (then `appliedError` says why) */
  applied: Applied | null;
  appliedError: string | null;
}

/** This host's promotions and applied settings, for the fleet's database (KLR_STATE_URL). */
export async function readHostSummary(layout: Pick<Layout, "promotionsDir" | "appliedFile">): Promise<HostSummary> {
  const listing = await listPromotions(layout.promotionsDir);
  let applied: Applied | null = null;
  let appliedError: string | null = null;
  try {
    applied = await readApplied(layout.appliedFile);
  } catch (error) {
    appliedError = messageOf(error);
  }
  return {
    promotions: listing.promotions.map(({ file: _file, ...promotion }) => promotion),
    unreadable: listing.unreadable,
    applied,
    appliedError,
  };
}
