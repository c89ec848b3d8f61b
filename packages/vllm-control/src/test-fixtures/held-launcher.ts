// A caller that starts a held canary and never releases it: `held-launcher <port> <host file>`.
// Prints the canary's group, then waits to be killed.
import { SIM_VLLM } from "@gpu-canary/vllm-sim";
import { launchCanary } from "../canary-launcher.ts";

const [port = "0", hostFile = ""] = process.argv.slice(2);
const canary = launchCanary(
  {
    vllmCommand: SIM_VLLM,
    modelPath: "/m",
    port: Number(port),
    gpuMemoryUtilization: 0.5,
    gpuIndex: 0,
    env: { GPU_CANARY_SIM_HOST: hostFile },
  },
  { held: true },
);
process.stdout.write(`held ${canary.pgid}\n`);
setInterval(() => undefined, 1000);
