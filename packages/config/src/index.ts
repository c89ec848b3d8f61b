import { GpuCanaryError } from "@gpu-canary/errors";
import type { ConfigErrors, LoadedConfig } from "./load-config.ts";

export { splitArguments } from "./arguments.ts";
export { parseEnvFile } from "./env-file.ts";
export type { EnvFileEntry, ParsedEnvFile } from "./env-file.ts";
export { layoutFor } from "./layout.ts";
export type { Layout } from "./layout.ts";
export { loadConfig } from "./load-config.ts";
export type { ConfigErrors, LoadConfigDeps, LoadedConfig, SettingOrigin, SettingSource } from "./load-config.ts";
export { SETTINGS, SETTING_NAMES } from "./settings.ts";
export type { Config, SettingName } from "./settings.ts";
export { WHISPER_SIZES, parseWindowSpec, portOfUrl } from "./values.ts";
export type { ClockTime, ListenAddress, LogSource, WhisperSize, WindowSpec } from "./values.ts";

/** Settings that failed validation: a usage error (exit 2) listing every bad variable. */
export class SettingsError extends GpuCanaryError {
  readonly errors: string[];

  constructor(errors: string[]) {
    super("SETTINGS_INVALID", errors.length === 1 ? `invalid setting: ${errors[0] ?? ""}` : `invalid settings:\n  ${errors.join("\n  ")}`, {
      kind: "usage",
      hint: "fix each variable where the message says it comes from: the environment, or the env file ($KLR_HOME/.kloros_env or KLR_ENV_FILE)",
      details: { errors },
    });
    this.errors = errors;
  }
}

/** The loaded settings, or a SettingsError naming every bad variable. */
export function requireConfig(result: LoadedConfig | ConfigErrors): LoadedConfig {
  if (!result.ok) throw new SettingsError(result.errors);
  return result;
}
