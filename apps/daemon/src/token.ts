import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import { errnoCode, GpuCanaryError } from "@gpu-canary/errors";
import { writeFileAtomic } from "@gpu-canary/state-file";

/** The bearer token for mutating routes: read from KLR_DAEMON_TOKEN_FILE, created (mode 0600) when absent. */
export async function ensureToken(path: string): Promise<string> {
  try {
    const token = (await readFile(path, "utf8")).trim();
    if (token.length < 16) {
      throw new GpuCanaryError("DAEMON_TOKEN_INVALID", `${path} holds no usable token (${token.length} characters)`, {
        kind: "fault",
        hint: `remove ${path}: gpu-canaryd writes a new one at start`,
      });
    }
    return token;
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error;
  }
  const token = randomBytes(32).toString("hex");
  await writeFileAtomic(path, `${token}\n`, { mode: 0o600 });
  return token;
}

/** Compare an Authorization header with the token in constant time (hashes make the lengths equal). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) return false;
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(match[1]), digest(token));
}
