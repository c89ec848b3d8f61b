// Entry for the systemd stand-ins: `systemd-main <systemctl|systemd-run|journalctl> args…`.
import { journalctl, systemctl, systemdRun } from "./systemd-standin.ts";

const [tool, ...args] = process.argv.slice(2);
let code: number;
if (tool === "systemctl") code = await systemctl(args);
else if (tool === "systemd-run") code = systemdRun(args);
else if (tool === "journalctl") code = await journalctl(args);
else {
  process.stderr.write(`unknown stand-in ${String(tool)}\n`);
  code = 2;
}
process.exit(code);
