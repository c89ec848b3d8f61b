import { readFile } from "node:fs/promises";
import { errnoCode, fileSystemProblem, messageOf } from "@gpu-canary/errors";
import { StateUnreadableError, writeFileAtomic } from "@gpu-canary/state-file";
import { isMap, isScalar, parseDocument } from "yaml";

/**
 * Production vLLM's `--config` file (vLLM ≥ 0.6): YAML whose keys are vLLM's long argument names,
 * spelt with dashes or underscores (vLLM's parser takes both). gpu-canary reads and writes only the
 * keys it tunes; every other key, every comment and the file's layout stay as the operator wrote
 * them (the yaml library's Document API edits the parsed document in place).
 */
export interface VllmConfigFile {
  path: string;
  text: string;
  /** `gpu-memory-utilization`, null when the file does not set it (vLLM's default then applies) */
  gpuMemoryUtilization: number | null;
  /** every top-level key with a plain value, spelt with dashes as on the command line (`max-model-len` → "8192") */
  values: Record<string, string>;
}

/** The flags gpu-canary tunes, as the command line spells them: on the command line they would override the file. */
export const TUNED_FLAGS = ["--gpu-memory-utilization"] as const;
const UTIL_KEYS = ["gpu-memory-utilization", "gpu_memory_utilization"] as const;

const hint = (path: string) =>
  `fix ${path} (vLLM's --config file: a YAML mapping of its argument names, e.g. "gpu-memory-utilization: 0.7"), or unset KLR_VLLM_CONFIG`;

function parse(path: string, text: string) {
  const doc = parseDocument(text, { keepSourceTokens: false });
  // The parser's message goes on to quote the line with a caret under it: its first line says it on one line.
  if (doc.errors.length > 0)
    throw new StateUnreadableError(path, `not YAML: ${doc.errors[0]?.message.split("\n")[0] ?? ""}`.trim(), hint(path));
  if (doc.contents !== null && !isMap(doc.contents))
    throw new StateUnreadableError(path, "is YAML but not a mapping of vLLM's arguments", hint(path));
  const present = UTIL_KEYS.filter((key) => doc.has(key));
  if (present.length > 1) throw new StateUnreadableError(path, `sets both ${present.join(" and ")}: vLLM takes one`, hint(path));
  const key = present[0];
  let util: number | null = null;
  if (key !== undefined) {
    const node = doc.get(key, true);
    const value = isScalar(node) ? node.value : node;
    if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > 1)
      throw new StateUnreadableError(path, `${key} is ${JSON.stringify(value)}: vLLM wants a fraction above 0 and at most 1`, hint(path));
    util = value;
  }
  return { doc, key, util };
}

/** Read and check the file; a missing, unreadable or malformed one is an error naming it (never guessed around). */
export async function readVllmConfig(path: string): Promise<VllmConfigFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT")
      throw new StateUnreadableError(
        path,
        "does not exist",
        `create it with production's settings, e.g. "gpu-memory-utilization: 0.7", or unset KLR_VLLM_CONFIG`,
        error,
      );
    const problem = fileSystemProblem(code, path);
    throw new StateUnreadableError(path, problem?.reason ?? messageOf(error), problem?.fix ?? hint(path), error, true);
  }
  const { doc, util } = parse(path, text);
  const values: Record<string, string> = {};
  if (isMap(doc.contents))
    for (const pair of doc.contents.items) {
      const key = isScalar(pair.key) ? pair.key.value : null;
      const value = isScalar(pair.value) ? pair.value.value : null;
      if (typeof key === "string" && (typeof value === "string" || typeof value === "number" || typeof value === "boolean"))
        values[key.replaceAll("_", "-")] = String(value);
    }
  return { path, text, gpuMemoryUtilization: util, values };
}

/**
 * The file's text with `gpu-memory-utilization` set to `util`, byte for byte the same elsewhere:
 * the value is replaced where the document says it lies, so the key's spelling, comments and
 * spacing stay; a file without the key gains `gpu-memory-utilization` as its last line.
 */
export function withGpuMemoryUtilization(path: string, text: string, util: number): string {
  if (!Number.isFinite(util) || util <= 0 || util > 1)
    throw new RangeError(`gpu-memory-utilization ${util} is not a fraction above 0 and at most 1`);
  const { doc, key } = parse(path, text);
  const node = key === undefined ? undefined : doc.get(key, true);
  if (isScalar(node) && node.range) {
    const [start, end] = node.range;
    return `${text.slice(0, start)}${String(util)}${text.slice(end)}`;
  }
  const body = text === "" || text.endsWith("\n") ? text : `${text}\n`;
  return `${body}${UTIL_KEYS[0]}: ${String(util)}\n`;
}

/** Write the file atomically (readers see the old text or the new, never a mix); its mode is kept. */
export async function writeVllmConfig(path: string, text: string): Promise<void> {
  // Checked before it replaces production's settings: a write never leaves a file vLLM cannot load.
  parse(path, text);
  await writeFileAtomic(path, text);
}

/**
 * What is wrong with production's command line for gpu-canary to tune it through `path`: it must
 * pass `--config <path>`, and must not pass a tuned flag too (vLLM lets the command line win,
 * silently). Empty when it is right.
 */
export function commandLineProblems(argv: readonly string[], path: string): string[] {
  const problems: string[] = [];
  const configs: string[] = [];
  argv.forEach((arg, i) => {
    if (arg === "--config" && argv[i + 1] !== undefined) configs.push(argv[i + 1] ?? "");
    else if (arg.startsWith("--config=")) configs.push(arg.slice("--config=".length));
  });
  if (!configs.includes(path))
    problems.push(configs.length === 0 ? `it passes no --config ${path}` : `it passes --config ${configs.join(", ")}, not ${path}`);
  for (const flag of TUNED_FLAGS) {
    const alternate = `--${flag.slice(2).replaceAll("-", "_")}`;
    const given = argv.find((a) => a === flag || a.startsWith(`${flag}=`) || a === alternate || a.startsWith(`${alternate}=`));
    if (given) problems.push(`it also passes ${given.split("=")[0] ?? flag}, which vLLM takes over the file's value`);
  }
  return problems;
}

/**
 * The argv of each command in `systemctl show -p ExecStart` output (`ExecStart={ path=… ;
 * argv[]=… ; … }`, one per command), split on spaces as systemd prints them.
 */
export function execStartArgvs(shown: string): string[][] {
  const out: string[][] = [];
  for (const match of shown.matchAll(/argv\[\]=(.*?) ; /g)) {
    const line = match[1]?.trim();
    if (line) out.push(line.split(/\s+/));
  }
  return out;
}
