import { GpuCanaryError } from "@gpu-canary/errors";

export type GpuProbeErrorCode =
  | "NVIDIA_SMI_NOT_FOUND"
  | "NVIDIA_DRIVER_NOT_LOADED"
  | "NO_GPUS_FOUND"
  | "NVML_VERSION_MISMATCH"
  | "NVIDIA_SMI_TIMEOUT"
  | "NVIDIA_SMI_FAILED"
  | "NVIDIA_SMI_UNPARSABLE";

const HINTS: Record<GpuProbeErrorCode, string> = {
  NVIDIA_SMI_NOT_FOUND: "install the NVIDIA driver utilities, or set KLR_NVIDIA_SMI to the nvidia-smi executable",
  NVIDIA_DRIVER_NOT_LOADED:
    "the NVIDIA kernel driver is not loaded: check `lsmod | grep nvidia` and `dmesg`; a kernel update without DKMS is the usual cause",
  NO_GPUS_FOUND:
    "nvidia-smi sees no GPU: check that the card is visible (`lspci | grep -i nvidia`) and, in a container, that the GPUs are passed through",
  NVML_VERSION_MISMATCH: "the driver was upgraded but the old kernel module is still loaded: reboot, or reload the nvidia modules",
  NVIDIA_SMI_TIMEOUT: "nvidia-smi hung: the driver may be wedged (a GPU fallen off the bus, a process stuck in the driver); check `dmesg`",
  NVIDIA_SMI_FAILED: "run the same nvidia-smi command by hand to see the problem",
  NVIDIA_SMI_UNPARSABLE: "nvidia-smi printed something that is not its CSV format; run the command by hand and report the output",
};

/** A plain, typed nvidia-smi failure: exit 4 at the CLI. */
export class GpuProbeError extends GpuCanaryError {
  override readonly code: GpuProbeErrorCode;
  readonly output: string;

  constructor(code: GpuProbeErrorCode, message: string, output = "") {
    super(code, message, { kind: "fault", hint: HINTS[code], details: { output: output.slice(-2000) } });
    this.code = code;
    this.output = output;
  }
}
