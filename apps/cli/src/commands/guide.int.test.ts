import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type PostgresCluster, startPostgres, testdir } from "@gpu-canary/testing";
import { execFileSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { SIM_VLLM, SYSTEMD_STANDINS, createSimSite, defineUnit } from "@gpu-canary/vllm-sim";
import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { cli } from "../test-fixtures/cli.ts";

const GUIDE = join(import.meta.dirname, "..", "..", "..", "..", "docs", "operations.md");
const CANDIDATE = '{"vllm_memory_util": 0.75, "whisper_model_size": "small"}';

/** Every `gpu-canary …` command the guide shows, as written (with what it pipes into), in its order. */
function guideCommands(): string[] {
  const text = readFileSync(GUIDE, "utf8").replaceAll("\\|", "|");
  const found = [
    ...text.matchAll(/`(gpu-canary [^`]+)`/g),
    // a line of a fenced code block (prose may begin with the name too: "gpu-canary needs no root.")
    ...[...text.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)].flatMap((block) => [...(block[1] ?? "").matchAll(/^(gpu-canary [^\n#]+)/gm)]),
    // inside a shell's command substitution: jq . "$(gpu-canary budget --json | jq -r .path)"
    ...text.matchAll(/\$\((gpu-canary [^)`\n]+)\)/g),
  ].map((m) => (m[1] ?? "").trim());
  return [...new Set(found)];
}

/**
 * The field path of a `| jq .a.b` (or `jq -r .a.b`) the guide pipes a command into. jq answers
 * null for a field that is not there, so a misspelt one would print null and never fail: the test
 * looks the path up in the document itself.
 */
function jqPath(command: string): string[] | null {
  const filter = /\| jq (?:-r )?\.([A-Za-z_][\w.]*)/.exec(command)?.[1];
  return filter ? filter.split(".") : null;
}

/** The first key of the path that the document lacks; a null on the way stops the walk (jq prints null there too). */
function missingKey(document: unknown, path: string[]): string | null {
  let value = document;
  for (const key of path) {
    if (value === null) return null;
    if (typeof value !== "object" || !(key in value)) return key;
    value = (value as Record<string, unknown>)[key];
  }
  return null;
}

/** Split like a shell: single quotes group; the guide's `…` placeholders get real values. */
function argv(command: string, logFile: string): string[] {
  const words: string[] = [];
  for (const m of command.matchAll(/'([^']*)'|(\S+)/g)) words.push(m[1] ?? m[2] ?? "");
  return words
    .slice(1)
    .map((w, i, all) => (w.includes("…") ? (all[i - 1] === "--candidate" ? CANDIDATE : "from the guide test") : w))
    .map((w) => (w === "vllm.log" ? logFile : w));
}

// The fleet section's commands run against a real PostgreSQL, started when the guide shows any.
let cluster: PostgresCluster | null = null;
afterAll(async () => {
  await cluster?.close();
});

describe("the operator's guide", () => {
  it("every gpu-canary command it shows works as written against the simulated host", async () => {
    // Production starts with --config, as `apply` needs; the load of its verification is short.
    const site = await createSimSite(await testdir(), {
      configFile: true,
      settings: { KLR_CANARY_MODE: "predictive", KLR_CANARY_LOAD_SECONDS: "1" },
    });
    onTestFinished(() => site.cleanup());
    await site.startProduction();
    const log = join(site.dir, "vllm.log");
    await writeFile(log, "ERROR [core.py:396] ValueError: No available memory for the cache blocks.\n");
    // Following never ends; the demo has its own test (demo.int.test.ts).
    const commands = guideCommands().filter((c) => !c.includes("--follow") && !c.startsWith("gpu-canary demo"));
    expect(commands.length).toBeGreaterThan(15);
    // The promotions the guide applies and rolls out, as a passed canary would have written them.
    const promotions = join(site.home, "out", "promotions");
    await mkdir(promotions, { recursive: true });
    for (const id of new Set(
      commands.flatMap((c) => {
        const m = /^gpu-canary (?:apply (\S+)|fleet rollout (r-\S+))/.exec(c);
        return m?.[1] ?? m?.[2] ?? [];
      }),
    ))
      await writeFile(
        join(promotions, `${id}.json`),
        JSON.stringify({
          run_id: id,
          created_at: new Date().toISOString(),
          subsystem: "gpu_allocation",
          candidate: { vllm_memory_util: 0.6, whisper_model_size: "small" },
          path: "quiesced",
          whisper_verified: false,
          llm_latency_ms: 10,
        }),
      );
    expect(commands).toContain("gpu-canary budget --json | jq .seconds_used");
    const results: string[] = [];
    let fleetEnv: Record<string, string> | null = null;
    // `fleet …` and `audit query --fleet`: against the database (`fleet init` comes first in the guide)
    const isFleet = (command: string) => command.startsWith("gpu-canary fleet ") || / --fleet\b/.test(command);
    for (const command of commands) {
      if (isFleet(command) && fleetEnv === null) {
        cluster = await startPostgres();
        fleetEnv = { ...site.env, KLR_STATE_URL: await cluster.createDatabase("guide"), KLR_HOST_ID: "gpu-a" };
      }
      const env = isFleet(command) && fleetEnv ? fleetEnv : site.env;
      const r = await cli(argv(command.split(" | ")[0] ?? "", log), env, new Date().toISOString());
      // Usage errors (2) mean the guide is wrong; faults (4) mean it does not work. 1 and 3 are answers.
      if (r.code === 2 || r.code === 4) results.push(`${command} → exit ${r.code}: ${(r.stderr || r.stdout).slice(0, 300)}`);
      const path = jqPath(command);
      const missing = path && missingKey(r.json(), path);
      if (missing) results.push(`${command} → its --json document has no "${missing}"`);
    }
    expect(results).toEqual([]);
  }, 180_000);

  it("its systemd and journal troubleshooting commands work through the simulated host's stand-ins, and doctor checks the unit", async () => {
    const site = await createSimSite(await testdir(), { settings: { KLR_CANARY_MODE: "predictive" } });
    onTestFinished(() => site.cleanup());
    const systemd = join(site.dir, "systemd");
    await mkdir(systemd, { recursive: true });
    defineUnit(systemd, "vllm.service", {
      exec: [SIM_VLLM, "--port", String(site.productionPort), "--model", site.modelPath, "--gpu-memory-utilization", "0.7"],
      env: { GPU_CANARY_SIM_HOST: site.hostFile, CUDA_VISIBLE_DEVICES: "0" },
    });
    const env = { ...process.env, SIM_SYSTEMD_DIR: systemd, PATH: `${SYSTEMD_STANDINS}:${process.env.PATH ?? ""}` };
    execFileSync("systemctl", ["start", "vllm.service"], { env });
    for (
      let i = 0;
      i < 300 &&
      !(await fetch(`${site.env.KLR_VLLM_URL}/health`).then(
        (r) => r.ok,
        () => false,
      ));
      i += 1
    )
      await new Promise((r) => setTimeout(r, 50));
    const text = readFileSync(GUIDE, "utf8");
    const lines = [...text.matchAll(/^(systemctl status [^\n]+|journalctl -u [^\n]+)$/gm)].map((m) => m[1] ?? "");
    const spans = [...text.matchAll(/`((?:systemctl status|journalctl -u) [^`]+)`/g)].map((m) => m[1] ?? "");
    // Following (-f) never ends; the rest answer and exit.
    const commands = [...new Set([...lines, ...spans])].filter((c) => !/\s-f\b/.test(c));
    expect(commands.length).toBeGreaterThanOrEqual(2);
    for (const command of commands) {
      const [file, ...args] = command.split(/\s+/) as [string, ...string[]];
      const out = execFileSync(file, args, { env, encoding: "utf8", timeout: 10_000 });
      expect(out.length).toBeGreaterThan(0);
    }
    const doctor = await cli(
      ["doctor", "--json"],
      { ...site.env, KLR_SERVICE_MANAGER: "systemd", KLR_VLLM_SERVICE: "vllm.service", PATH: env.PATH, SIM_SYSTEMD_DIR: systemd },
      new Date().toISOString(),
    );
    const checks = (doctor.json() as { checks: { name: string; ok: boolean; detail: string }[] }).checks;
    expect(checks.find((c) => c.name === "production_manager")).toMatchObject({ ok: true, detail: "systemd unit vllm.service is loaded" });
    // The unit's ExecStart, as systemctl shows it, is what production_config reads: this one passes the flag, not the file.
    const configFile = join(site.dir, "vllm.yaml");
    await writeFile(configFile, "gpu-memory-utilization: 0.7\n");
    const withConfig = await cli(
      ["doctor", "--json"],
      {
        ...site.env,
        KLR_SERVICE_MANAGER: "systemd",
        KLR_VLLM_SERVICE: "vllm.service",
        KLR_VLLM_CONFIG: configFile,
        PATH: env.PATH,
        SIM_SYSTEMD_DIR: systemd,
      },
      new Date().toISOString(),
    );
    expect(
      (withConfig.json() as { checks: { name: string; ok: boolean; detail: string }[] }).checks.find((c) => c.name === "production_config"),
    ).toMatchObject({
      ok: false,
      detail: `${configFile} sets gpu-memory-utilization 0.7, but vllm.service's ExecStart: it passes no --config ${configFile}; it also passes --gpu-memory-utilization, which vLLM takes over the file's value`,
    });
    execFileSync("systemctl", ["stop", "vllm.service"], { env });
  }, 120_000);
});
