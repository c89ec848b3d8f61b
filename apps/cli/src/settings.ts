import { type Layout, type LoadedConfig, layoutFor, loadConfig, requireConfig } from "@gpu-canary/config";
import type { Io } from "./io.ts";

export interface Settings extends LoadedConfig {
  layout: Layout;
}

/** The validated settings or a SettingsError (exit 2); warnings ("did you mean") go to stderr. */
export function loadSettings(io: Io): Settings {
  const loaded = requireConfig(loadConfig({ env: io.env, homeDir: io.homeDir }));
  for (const warning of loaded.warnings) io.stderr(`warning: ${warning}\n`);
  return { ...loaded, layout: layoutFor(loaded.config) };
}
