import { open } from "node:fs/promises";
import { execa } from "execa";

export type ProductionLogSource = { kind: "journal" } | { kind: "file"; path: string } | { kind: "command"; command: string };

/** Enough of the log to hold production's last start, even with request logging on. */
const TAIL_BYTES = 4 * 1024 * 1024;
const JOURNAL_LINES = 20_000;

/**
 * The last lines of production vLLM's log as it wrote them (KLR_VLLM_LOG): the file's tail, or
 * the unit's journal messages (`-o cat`: vLLM's own timestamps stay in them). A follow command
 * cannot be read back, and a log that cannot be read is no answer: null, never an error — this
 * only sharpens an estimate.
 */
export async function productionLogTail(source: ProductionLogSource, unit: string, journalctl = "journalctl"): Promise<string[] | null> {
  try {
    if (source.kind === "file") {
      const file = await open(source.path, "r");
      try {
        const { size } = await file.stat();
        const length = Math.min(size, TAIL_BYTES);
        const buffer = Buffer.alloc(length);
        await file.read(buffer, 0, length, size - length);
        return buffer.toString("utf8").split("\n");
      } finally {
        await file.close();
      }
    }
    if (source.kind === "journal") {
      const result = await execa(journalctl, ["-u", unit, "-o", "cat", "--no-pager", "-n", String(JOURNAL_LINES)], {
        reject: false,
        timeout: 5000,
        stdin: "ignore",
        maxBuffer: 64 * 1024 * 1024,
      });
      return result.exitCode === 0 ? result.stdout.split("\n") : null;
    }
    return null;
  } catch {
    return null;
  }
}
