// The restore watchdog process: `watchdog-main <arm file>`. See watchdog.ts.
import { rm } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { messageOf } from "@gpu-canary/errors";
import { createProcessInspector, writeJsonAtomic } from "@gpu-canary/state-file";
import { stopProcessGroup } from "./procfs.ts";
import { productionServes, restoreProduction } from "./restore.ts";
import { type ArmFile, type WatchdogReport, readArmFile } from "./watchdog.ts";

const armFile = process.argv[2];
if (!armFile) process.exit(2);
const inspector = createProcessInspector();
// The armer may be killed along with its terminal or session: this process ignores those signals.
process.on("SIGHUP", () => undefined);

function armerDead(arm: ArmFile): boolean {
  const probe = inspector.probe(arm.armer_pid);
  if (probe.state === "dead") return true;
  return (
    probe.state === "alive" && arm.armer_start_token !== null && probe.startToken !== null && probe.startToken !== arm.armer_start_token
  );
}

async function fire(arm: ArmFile, reason: string): Promise<void> {
  const firedAt = new Date();
  let armerKilled = false;
  if (!armerDead(arm)) {
    // So that no late step of the run follows the watchdog's restore.
    try {
      process.kill(arm.armer_pid, "SIGKILL");
      armerKilled = true;
    } catch {
      // it died meanwhile
    }
  }
  const canaryStopped = arm.canary_pgid === null ? true : (await stopProcessGroup(arm.canary_pgid, 3000)).gone;
  let servingAt: Date | null = null;
  let seconds: number | null = null;
  let error: string | null = null;
  // A production that serves was restored by the run before it died: starting it again would at
  // best do nothing and at worst (a start command) launch a second instance beside it.
  const wasServing = await productionServes(arm.restore, 3000);
  if (wasServing) {
    servingAt = new Date();
    seconds = 0;
  } else {
    try {
      const restored = await restoreProduction(arm.restore);
      servingAt = restored.servingAt;
      seconds = restored.seconds;
    } catch (e) {
      error = messageOf(e);
    }
  }
  const report: WatchdogReport = {
    run_id: arm.run_id,
    fired_at: firedAt.toISOString(),
    reason,
    armer_killed: armerKilled,
    canary_stopped: canaryStopped,
    production_serving_at: servingAt?.toISOString() ?? null,
    production_was_serving: wasServing,
    restore_seconds: seconds,
    error,
  };
  await writeJsonAtomic(arm.report_path, report);
}

for (;;) {
  let arm: ArmFile | null;
  try {
    arm = await readArmFile(armFile);
  } catch {
    arm = null;
  }
  if (arm === null || arm.disarmed) break;
  if (armerDead(arm)) {
    await fire(arm, `the arming process ${arm.armer_pid} died`);
    break;
  }
  if (Date.now() >= Date.parse(arm.deadline_at)) {
    await fire(arm, `the run passed its deadline ${arm.deadline_at}`);
    break;
  }
  await sleep(50);
}
await rm(armFile, { force: true });
process.exit(0);
