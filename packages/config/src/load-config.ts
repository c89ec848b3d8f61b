import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { errnoCode } from "@gpu-canary/errors";
import { distance } from "fastest-levenshtein";
import { parseEnvFile } from "./env-file.ts";
import { type Config, SETTINGS, SETTING_NAMES, type SettingName } from "./settings.ts";
import { portOfUrl } from "./values.ts";

export type SettingSource = { kind: "default" } | { kind: "env-file"; file: string; line: number } | { kind: "environment" };

export interface SettingOrigin {
  /** the text the value was parsed from (secrets redacted); null when unset */
  text: string | null;
  source: SettingSource;
}

export interface LoadedConfig {
  ok: true;
  config: Config;
  origins: Record<SettingName, SettingOrigin>;
  /** the env file that was read, or null when there was none */
  envFile: string | null;
  warnings: string[];
}

export interface ConfigErrors {
  ok: false;
  errors: string[];
  warnings: string[];
}

export interface LoadConfigDeps {
  /** the process environment (only apps read process.env) */
  env: Readonly<Record<string, string | undefined>>;
  /** the user's home directory, the default KLR_HOME */
  homeDir: string;
  /** this machine's name, the default KLR_HOST_ID; default os.hostname() */
  hostName?: string;
  /** the env file's text, or null when it does not exist */
  readText?: (path: string) => string | null;
}

const META_KEYS = new Set(["KLR_ENV_FILE"]);

function readIfExists(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return null;
    throw error;
  }
}

/** Settings from defaults < env file < process environment, validated together. */
export function loadConfig(deps: LoadConfigDeps): LoadedConfig | ConfigErrors {
  const readText = deps.readText ?? readIfExists;
  const errors: string[] = [];
  const warnings: string[] = [];
  const env = deps.env;

  const explicitFile = nonEmpty(env.KLR_ENV_FILE);
  const envFile = explicitFile ?? `${nonEmpty(env.KLR_HOME) ?? deps.homeDir}/.kloros_env`;
  let fileText: string | null = null;
  try {
    fileText = readText(envFile);
  } catch (error) {
    errors.push(`KLR_ENV_FILE: cannot read ${envFile} (${errnoCode(error) ?? String(error)})`);
  }
  if (fileText === null && explicitFile !== undefined && errors.length === 0) {
    errors.push(`KLR_ENV_FILE: expected an existing env file, got ${JSON.stringify(explicitFile)} (no such file)`);
  }
  const parsedFile = fileText === null ? null : parseEnvFile(fileText, envFile);
  errors.push(...(parsedFile?.errors ?? []));
  warnings.push(...(parsedFile?.warnings ?? []));

  for (const [key, entry] of parsedFile?.entries ?? []) warnUnknown(key, `${envFile}:${entry.line}`, warnings);
  for (const key of Object.keys(env)) warnUnknown(key, "the environment", warnings);

  const texts = new Map<SettingName, { text: string | null; source: SettingSource }>();
  for (const name of SETTING_NAMES) {
    const fromEnv = env[name];
    const fromFile = parsedFile?.entries.get(name);
    if (fromEnv !== undefined) texts.set(name, { text: fromEnv, source: { kind: "environment" } });
    else if (fromFile) texts.set(name, { text: fromFile.value, source: { kind: "env-file", file: envFile, line: fromFile.line } });
    else texts.set(name, { text: null, source: { kind: "default" } });
  }

  // A bad KLR_HOME is reported once; the paths derived from it fall back to the home directory.
  const homeText = texts.get("KLR_HOME")?.text?.trim() || deps.homeDir;
  const home = SETTINGS.KLR_HOME.schema.safeParse(homeText).success ? homeText : deps.homeDir;
  const values: Record<string, unknown> = {};
  const origins = {} as Record<SettingName, SettingOrigin>;
  for (const name of SETTING_NAMES) {
    const definition = SETTINGS[name];
    const given = texts.get(name) ?? { text: null, source: { kind: "default" } as const };
    let text = given.text;
    if (text !== null && text.trim() === "" && "optional" in definition) text = null;
    if (text === null) {
      const fallback = name === "KLR_HOME" ? homeText : "defaultValue" in definition ? definition.defaultValue : undefined;
      text = typeof fallback === "function" ? fallback({ home, hostName: deps.hostName ?? hostname() }) : (fallback ?? null);
    }
    const secret = "secret" in definition && definition.secret;
    const redact = "redact" in definition ? definition.redact : undefined;
    const shown = (value: string) => (secret ? "********" : redact ? redact(value) : value);
    origins[name] = { text: text === null ? null : shown(text), source: given.source };
    if (text === null) {
      values[definition.key] = undefined;
      continue;
    }
    const parsed = definition.schema.safeParse(text);
    if (parsed.success) values[definition.key] = parsed.data;
    else
      errors.push(
        `${name}: ${parsed.error.issues[0]?.message ?? "invalid"}, got ${JSON.stringify(shown(text))}${describeSource(given.source)}`,
      );
  }

  if (errors.length > 0) return { ok: false, errors, warnings };
  const config = values as Config;
  errors.push(...combinationErrors(config));
  if (errors.length > 0) return { ok: false, errors, warnings };
  return { ok: true, config, origins, envFile: fileText === null ? null : envFile, warnings };
}

function combinationErrors(config: Config): string[] {
  const errors: string[] = [];
  if (config.vllmMemoryUtilMin > config.vllmMemoryUtilMax) {
    errors.push(
      `KLR_VLLM_MEMORY_UTIL_MIN: expected at most KLR_VLLM_MEMORY_UTIL_MAX (${config.vllmMemoryUtilMax}), got ${config.vllmMemoryUtilMin}`,
    );
  }
  const productionPort = portOfUrl(config.vllmUrl);
  if (config.canaryPort === productionPort) {
    errors.push(`KLR_CANARY_PORT: expected a port other than production's (KLR_VLLM_URL ${config.vllmUrl}), got ${config.canaryPort}`);
  }
  if (config.canaryPort === config.daemonListen.port) {
    errors.push(`KLR_CANARY_PORT: expected a port other than the daemon's (KLR_DAEMON_LISTEN), got ${config.canaryPort}`);
  }
  if (config.daemonListen.port === productionPort) {
    errors.push(
      `KLR_DAEMON_LISTEN: expected a port other than production's (KLR_VLLM_URL ${config.vllmUrl}), got ${config.daemonListen.port}`,
    );
  }
  if (config.allowSpareGpu && config.spareGpuId === config.productionGpuId) {
    errors.push(
      `KLR_SPARE_GPU_ID: expected a GPU other than production's (KLR_PRODUCTION_GPU_ID ${config.productionGpuId}), got ${config.spareGpuId}`,
    );
  }
  return errors;
}

function describeSource(source: SettingSource): string {
  switch (source.kind) {
    case "default":
      return " (the default)";
    case "environment":
      return " (from the environment)";
    case "env-file":
      return ` (from ${source.file}:${source.line})`;
  }
}

function warnUnknown(key: string, where: string, warnings: string[]): void {
  if (!key.startsWith("KLR_") || key in SETTINGS || META_KEYS.has(key)) return;
  let best: { name: string; d: number } | null = null;
  for (const name of SETTING_NAMES) {
    const d = distance(key, name);
    if (d <= 2 && (best === null || d < best.d)) best = { name, d };
  }
  if (best) warnings.push(`${key} (${where}) is not a gpu-canary setting: did you mean ${best.name}?`);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}
