import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { constants } from "node:fs";
import { lstat, readFile } from "node:fs/promises";
import { errnoCode, GpuCanaryError, messageOf } from "@gpu-canary/errors";
import { writeFileAtomic } from "@gpu-canary/state-file";

/** The bearer token for mutating routes: read from KLR_DAEMON_TOKEN_FILE, created (mode 0600) when absent. */
export async function ensureToken(path: string): Promise<string> {
  const refuse = (why: string, hint: string) =>
    new GpuCanaryError("DAEMON_TOKEN_FILE_UNSAFE", `KLR_DAEMON_TOKEN_FILE ${path} ${why}`, { kind: "usage", hint });
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw tokenFault(path, error);
    const token = randomBytes(32).toString("hex");
    await writeFileAtomic(path, `${token}\n`, { mode: 0o600 });
    return token;
  }
  // Whoever can read the token can stop production through POST /intents: it is ours alone.
  if (stats.isSymbolicLink())
    throw refuse("is a symbolic link", `point KLR_DAEMON_TOKEN_FILE at the file itself, or remove ${path}: a new one is written`);
  if (!stats.isFile())
    throw refuse(
      "is not a regular file",
      `remove it (rmdir ${path}) or point KLR_DAEMON_TOKEN_FILE elsewhere: gpu-canaryd writes a new token file`,
    );
  if ((stats.mode & 0o077) !== 0)
    throw refuse(`can be read by others (mode ${(stats.mode & 0o777).toString(8).padStart(4, "0")})`, `chmod 600 ${path}`);
  let token: string;
  try {
    token = (await readFile(path, { encoding: "utf8", flag: constants.O_RDONLY | constants.O_NOFOLLOW })).trim();
  } catch (error) {
    throw tokenFault(path, error);
  }
  if (token.length < 16) {
    throw new GpuCanaryError("DAEMON_TOKEN_INVALID", `${path} holds no usable token (${token.length} characters)`, {
      kind: "fault",
      hint: `remove ${path}: gpu-canaryd writes a new one at start`,
    });
  }
  return token;
}

function tokenFault(path: string, error: unknown): GpuCanaryError {
  return new GpuCanaryError(
    "DAEMON_TOKEN_UNREADABLE",
    `cannot read KLR_DAEMON_TOKEN_FILE ${path}: ${errnoCode(error) ?? messageOf(error)}`,
    {
      kind: "fault",
      hint: "gpu-canaryd must be able to read (or create) it: check the folder's owner and permissions",
    },
  );
}

/** Compare an Authorization header with the token in constant time (hashes make the lengths equal). */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) return false;
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(match[1]), digest(token));
}
