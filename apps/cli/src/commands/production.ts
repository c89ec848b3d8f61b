import { messageOf } from "@gpu-canary/errors";
import type { GlobalOptions, Io } from "../io.ts";
import { answer } from "../output.ts";
import { loadSettings } from "../settings.ts";

interface Column {
  gpu_memory_utilization: number | null;
  whisper_model_size: string | null;
}

/**
 * `production`: what production serves with now (its own /metrics), what its --config file says,
 * and what the newest promotion would change — side by side, so a promotion's effect is plain
 * before anything applies it.
 */
export async function runProduction(options: GlobalOptions, io: Io): Promise<number> {
  const settings = loadSettings(io);
  const { config, layout } = settings;
  const { readVllmConfig } = await import("@gpu-canary/vllm-control");
  const { listPromotions, productionClient, readApplied } = await import("@gpu-canary/spica-evaluator");
  const problems: string[] = [];

  const client = productionClient(config);
  let serving: (Column & { source: string }) | null = null;
  try {
    const util = await client.servedUtilization(3000);
    serving = {
      gpu_memory_utilization: util,
      whisper_model_size: config.whisperSize,
      source:
        util !== null
          ? "production's /metrics (vllm:cache_config_info); Whisper: KLR_WHISPER_SIZE"
          : "production's /metrics has no vllm:cache_config_info",
    };
  } catch (error) {
    problems.push(`production at ${config.vllmUrl} does not answer /metrics: ${messageOf(error)}`);
  }

  let configFile: (Column & { path: string }) | null = null;
  if (config.vllmConfigFile !== undefined) {
    try {
      const file = await readVllmConfig(config.vllmConfigFile);
      configFile = { path: file.path, gpu_memory_utilization: file.gpuMemoryUtilization, whisper_model_size: null };
    } catch (error) {
      problems.push(messageOf(error));
    }
  }

  let applied: Awaited<ReturnType<typeof readApplied>> = null;
  try {
    applied = await readApplied(layout.appliedFile);
  } catch (error) {
    problems.push(messageOf(error));
  }

  if (
    serving &&
    configFile &&
    configFile.gpu_memory_utilization !== null &&
    serving.gpu_memory_utilization !== configFile.gpu_memory_utilization
  )
    problems.push(
      `production serves gpu_memory_utilization ${serving.gpu_memory_utilization ?? "?"} but ${configFile.path} says ${configFile.gpu_memory_utilization}: it has not restarted since the file changed, or its command line overrides the file (see \`gpu-canary doctor\`'s production_config)`,
    );
  const listing = await listPromotions(layout.promotionsDir);
  for (const bad of listing.unreadable) problems.push(`${bad.file} is not a promotion: ${bad.reason}`);
  // What an apply would take next: rolled-back, stale and superseded ones are done with.
  const newest = listing.promotions.filter((p) => p.state === "proposed" || p.state === "applied").at(-1) ?? null;
  const changes =
    newest && serving
      ? [
          ...(newest.candidate.vllm_memory_util !== serving.gpu_memory_utilization
            ? [`gpu_memory_utilization ${serving.gpu_memory_utilization ?? "?"} → ${newest.candidate.vllm_memory_util}`]
            : []),
          ...(newest.candidate.whisper_model_size !== serving.whisper_model_size
            ? [`whisper_model_size ${serving.whisper_model_size ?? "?"} → ${newest.candidate.whisper_model_size}`]
            : []),
        ]
      : [];
  const doc = {
    serving,
    config_file: configFile,
    applied: applied && {
      gpu_memory_utilization: applied.vllm_memory_util,
      whisper_model_size: applied.whisper_model_size,
      promotion_run_id: applied.promotion_run_id,
      applied_at: applied.applied_at,
      file: applied.file,
      previous: applied.previous && {
        gpu_memory_utilization: applied.previous.vllm_memory_util,
        promotion_run_id: applied.previous.promotion_run_id,
      },
    },
    newest_promotion: newest && {
      run_id: newest.run_id,
      created_at: newest.created_at,
      gpu_memory_utilization: newest.candidate.vllm_memory_util,
      whisper_model_size: newest.candidate.whisper_model_size,
      changes,
    },
    problems,
  };
  for (const problem of problems) io.stderr(`warning: ${problem}\n`);
  answer(io, options, doc, () => {
    const cell = (v: number | string | null | undefined) => (v === null || v === undefined ? "—" : String(v));
    const rows: [string, string, string, string, string][] = [
      [
        "",
        "serving now",
        config.vllmConfigFile === undefined ? "config file (KLR_VLLM_CONFIG unset)" : "config file",
        applied ? `applied${applied.promotion_run_id ? ` (${applied.promotion_run_id})` : " (before any apply)"}` : "applied (none)",
        newest ? `promotion ${newest.run_id} (${newest.state})` : "promotion (none)",
      ],
      [
        "gpu_memory_utilization",
        cell(serving?.gpu_memory_utilization),
        cell(configFile?.gpu_memory_utilization),
        cell(applied?.vllm_memory_util),
        cell(newest?.candidate.vllm_memory_util),
      ],
      [
        "whisper_model_size",
        cell(serving?.whisper_model_size),
        "—",
        cell(applied?.whisper_model_size),
        cell(newest?.candidate.whisper_model_size),
      ],
    ];
    const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i]?.length ?? 0)));
    const table = rows.map((r) =>
      r
        .map((c, i) => (i < 4 ? c.padEnd(widths[i] ?? 0) : c))
        .join("  ")
        .trimEnd(),
    );
    const said = newest
      ? changes.length > 0
        ? `The newest promotion would change: ${changes.join(", ")}.`
        : "The newest promotion is what production serves."
      : "No promotion yet.";
    return [...table, "", said].join("\n");
  });
  return 0;
}
