import { readFileSync, readdirSync } from "node:fs";
import { testdir, until } from "@gpu-canary/testing";
import { createSimSite, updateHost } from "@gpu-canary/vllm-sim";
import { describe, expect, it, onTestFinished } from "vitest";
import { startDaemon } from "./test-fixtures/daemon-process.ts";

/** The command lines of `pid`'s child processes, from /proc. */
function childrenOf(pid: number): string[] {
  const found: string[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so count from the last ")".
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) found.push(readFileSync(`/proc/${entry}/cmdline`, "utf8").replaceAll("\0", " "));
    } catch {
      // it ended while we looked
    }
  }
  return found;
}

// execa's signal-exit re-raises a signal with its default action when it finds itself the last
// listener, so these tests need a child running at the moment of the signal.
describe("gpu-canaryd signalled while a child process runs", () => {
  it("SIGTERM while nvidia-smi hangs under a GET /status: logs stopping, ignores a second SIGTERM, exits 0", async () => {
    const site = await createSimSite(await testdir());
    onTestFinished(() => site.cleanup());
    const { child, exited, ended, stderr } = await startDaemon(site);
    const pid = child.pid ?? 0;
    const waitFor = <T>(check: () => T | false | Promise<T | false>, what: string) =>
      until(check, () => `${what}\n${stderr().slice(-4000)}`, { timeoutMs: 40_000, pollMs: 50 });

    await waitFor(() => stderr().includes("Server listening"), "the daemon to listen");
    await updateHost(site.hostFile, (state) => ({ ...state, fail: "hang" }));
    const status = fetch(`http://${site.env.KLR_DAEMON_LISTEN}/status`).then(
      (r) => r.status,
      () => null,
    );
    await waitFor(() => childrenOf(pid).some((c) => c.includes("nvidia-smi")), "nvidia-smi to run under the daemon");

    child.kill("SIGTERM");
    await waitFor(() => {
      const end = ended();
      if (end) throw new Error(`gpu-canaryd ended without a safe stop: ${JSON.stringify(end)}\n${stderr().slice(-4000)}`);
      return stderr().includes('"msg":"stopping"');
    }, "the stopping log line");
    // The stop waits for /status, which waits for the hung nvidia-smi: a second signal lands meanwhile.
    expect(childrenOf(pid).some((c) => c.includes("nvidia-smi"))).toBe(true);
    child.kill("SIGTERM");

    expect(await exited).toEqual({ code: 0, signal: null });
    expect(stderr()).toContain('"msg":"stopped"');
    expect(stderr()).toMatch(/"signal":"SIGTERM".*"msg":"already stopping/);
    await status;
  }, 120_000);
});
