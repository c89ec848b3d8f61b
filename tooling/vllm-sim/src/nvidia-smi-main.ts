// The nvidia-smi stand-in's entry point: reads the host state named by GPU_CANARY_SIM_HOST.
import { readHost } from "./host-state.ts";
import { answer } from "./nvidia-smi-standin.ts";

const path = process.env.GPU_CANARY_SIM_HOST;
if (!path) {
  process.stdout.write(
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed and running.\n",
  );
  process.exit(9);
}
const result = answer(process.argv.slice(2), readHost(path));
if (result.hang) {
  setInterval(() => undefined, 60_000);
} else {
  process.stdout.write(result.stdout);
  process.exitCode = result.code;
}
