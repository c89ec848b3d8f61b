import { homedir } from "node:os";
import { loadConfig, requireConfig } from "@gpu-canary/config";
import { GpuCanaryError, exitCodeOf } from "@gpu-canary/errors";
import { pino } from "pino";
import { buildServer } from "./server.ts";

export const VERSION = "0.1.0";

/** Validate settings, listen on KLR_DAEMON_LISTEN, stop cleanly on SIGTERM/SIGINT. */
export async function main(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  const logger = pino({ name: "gpu-canaryd", redact: ["req.headers.authorization", "*.token"] }, pino.destination(2));
  let settings;
  try {
    settings = requireConfig(loadConfig({ env, homeDir: homedir() }));
  } catch (error) {
    if (error instanceof GpuCanaryError) {
      logger.error({ code: error.code, hint: error.hint }, error.message);
      return exitCodeOf(error.kind);
    }
    throw error;
  }
  for (const warning of settings.warnings) logger.warn(warning);
  const app = buildServer({ logger, now: () => new Date(), version: VERSION });
  const { host, port } = settings.config.daemonListen;
  await app.listen({ host, port });
  await new Promise<void>((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, "stopping");
      resolve();
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  await app.close();
  logger.flush();
  return 0;
}
