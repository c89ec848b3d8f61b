import { SETTINGS, SETTING_NAMES, type SettingSource } from "@gpu-canary/config";
import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { loadSettings } from "../settings.ts";

function sourceLabel(source: SettingSource): string {
  switch (source.kind) {
    case "default":
      return "default";
    case "environment":
      return "environment";
    case "env-file":
      return `${source.file}:${source.line}`;
  }
}

export function runConfig(options: GlobalOptions, io: Io): number {
  const settings = loadSettings(io);
  const entries = SETTING_NAMES.map((name) => {
    const origin = settings.origins[name];
    const definition = SETTINGS[name];
    const value = (settings.config as Record<string, unknown>)[definition.key];
    const secret = "secret" in definition && definition.secret && value !== undefined;
    // Structured values (the window, the listen address, the log source) show as written; so do
    // redacted ones (KLR_STATE_URL without its password).
    const asWritten = "redact" in definition || (typeof value === "object" && value !== null && !Array.isArray(value));
    const shown = asWritten ? origin.text : value;
    return { name, value: secret ? "********" : (shown ?? null), text: origin.text, origin };
  });
  const { layout } = settings;
  const json = {
    env_file: settings.envFile,
    settings: Object.fromEntries(
      entries.map((e) => [
        e.name,
        {
          value: e.value,
          text: e.text,
          source: e.origin.source.kind,
          ...(e.origin.source.kind === "env-file" ? { file: e.origin.source.file, line: e.origin.source.line } : {}),
        },
      ]),
    ),
    paths: {
      gpu_lock: layout.gpuLock,
      watchdog_report: layout.watchdogReport,
      maintenance_dir: layout.maintenanceDir,
      rate_limits: layout.rateLimits,
      vllm_seen: layout.vllmSeen,
      audit_dir: layout.auditDir,
      intents_dir: layout.intentsDir,
      promotions_dir: layout.promotionsDir,
      model: layout.modelPath,
      daemon_token_file: layout.daemonTokenFile,
    },
    warnings: settings.warnings,
  };
  answer(io, options, json, () => {
    const width = Math.max(...entries.map((e) => e.name.length));
    const lines = entries.map((e) => `${e.name.padEnd(width)}  ${e.text ?? "(unset)"}  [${sourceLabel(e.origin.source)}]`);
    return [`env file: ${settings.envFile ?? "(none)"}`, ...lines].join("\n");
  });
  return 0;
}
