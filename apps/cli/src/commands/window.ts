import { localTime, nightLabel, windowAt } from "@gpu-canary/policy";
import type { GlobalOptions, Io } from "../io.ts";
import { answer, humanDuration, isoUtc } from "../output.ts";
import { loadSettings } from "../settings.ts";
import { parseAt } from "../time-input.ts";

export function runWindow(options: GlobalOptions & { at?: string }, io: Io): number {
  const { config } = loadSettings(io);
  const zone = config.maintenanceTimeZone;
  const at = options.at === undefined ? io.now() : parseAt(options.at, zone);
  const state = windowAt(config.maintenanceWindow, zone, at);
  const json = {
    open: state.open,
    opens_at: isoUtc(state.opensAt),
    closes_at: isoUtc(state.closesAt),
    timezone: zone,
    window: state.spec,
    at: isoUtc(at),
    seconds_left: state.secondsLeft,
    seconds_until_open: state.secondsUntilOpen,
    night: state.night,
  };
  answer(io, options, json, () => {
    const head = `Maintenance window ${state.spec} ${zone}: ${state.open ? "OPEN" : "closed"}`;
    const edges = state.open
      ? [
          `Opened: ${localTime(state.opensAt, zone)} (${isoUtc(state.opensAt)})`,
          `Closes: ${localTime(state.closesAt, zone)} (${isoUtc(state.closesAt)}), ${humanDuration(state.secondsLeft)} left`,
        ]
      : [
          `Opens:  ${localTime(state.opensAt, zone)} (${isoUtc(state.opensAt)}), in ${humanDuration(state.secondsUntilOpen)}`,
          `Closes: ${localTime(state.closesAt, zone)} (${isoUtc(state.closesAt)})`,
        ];
    const night = `Night:  ${nightLabel(state.night)} (${state.open ? "this window's" : "the last window's, until the next opens"}; \`gpu-canary budget\` shows its downtime)`;
    return [head, ...edges, night].join("\n");
  });
  return 0;
}
