import { existsSync } from "node:fs";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { testdir } from "@gpu-canary/testing";
import { SIM_VLLM } from "@gpu-canary/vllm-sim";
import { describe, expect, it } from "vitest";
import { findExecutable } from "./executable.ts";
import { checkVllmCommand } from "./vllm-version.ts";

const env = { ...process.env };
const python = findExecutable("python3", env);

async function script(name: string, body: string): Promise<string> {
  const dir = join(await testdir(), "bin");
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
  return path;
}

describe("checkVllmCommand runs vLLM the harmless way", () => {
  it("asks the CLI form for its version (`vllm --version`, as vllm/entrypoints/cli/main.py answers)", async () => {
    const result = await checkVllmCommand(SIM_VLLM, { ...env, SIM_VERSION: "0.6.3.post1" });
    expect(result).toMatchObject({ ok: true, version: "0.6.3.post1" });
    expect(result.detail).toBe(`\`${SIM_VLLM} --version\` works: vLLM 0.6.3.post1`);
  });

  it("fails a CLI that cannot import its own package, quoting Python's last line", async () => {
    const broken = await script(
      "vllm",
      `echo 'Traceback (most recent call last):' >&2\necho "ImportError: libcudart.so.12: cannot open shared object file: No such file or directory" >&2\nexit 1`,
    );
    const result = await checkVllmCommand(`${broken} serve`, env);
    expect(result).toEqual({
      ok: false,
      detail: `\`${broken} --version\` failed (exit 1): ImportError: libcudart.so.12: cannot open shared object file: No such file or directory`,
    });
  });

  it("imports the module form's package: a real python3 without vLLM fails, one with it passes", async () => {
    // CI installs it (.ci/run): a missing interpreter is a broken machine, not a reason to skip.
    if (python === null) throw new Error("python3 is not on PATH: install it with `apt-get install -y python3-minimal`");
    const command = `${python} -m vllm.entrypoints.openai.api_server`;
    const missing = await checkVllmCommand(command, { ...env, PYTHONPATH: await testdir() });
    expect(missing.ok).toBe(false);
    expect(missing.detail).toMatch(
      /import vllm; print\(vllm.__version__\)` failed \(exit 1\): ModuleNotFoundError: No module named 'vllm'$/,
    );
    const site = await testdir();
    await mkdir(join(site, "vllm"));
    await writeFile(join(site, "vllm", "__init__.py"), '__version__ = "0.7.3"\n');
    expect(await checkVllmCommand(command, { ...env, PYTHONPATH: site })).toMatchObject({ ok: true, version: "0.7.3" });
  });

  it("only finds a wrapper script: given --version it might start a server", async () => {
    const marker = join(await testdir(), "ran");
    const wrapper = await script("start-vllm.sh", `touch ${marker}`);
    expect(await checkVllmCommand(wrapper, env)).toEqual({
      ok: true,
      version: null,
      detail: `KLR_VLLM_COMMAND starts ${wrapper} (a wrapper: found, not run)`,
    });
    expect(existsSync(marker)).toBe(false);
  });

  it("gives up on a command that hangs, and says how long it waited", async () => {
    const hangs = await script("vllm", "sleep 30");
    const started = Date.now();
    expect(await checkVllmCommand(hangs, env, { timeoutMs: 300 })).toEqual({
      ok: false,
      detail: `\`${hangs} --version\` did not finish in 0.3 s`,
    });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("says a command that could not be started, naming why (a script whose interpreter is gone)", async () => {
    const dir = join(await testdir(), "bin");
    await mkdir(dir, { recursive: true });
    const orphan = join(dir, "vllm");
    await writeFile(orphan, "#!/nonexistent/venv/bin/python3\n");
    await chmod(orphan, 0o755);
    const result = await checkVllmCommand(orphan, env);
    expect(result.ok).toBe(false);
    expect(result.detail).toMatch(new RegExp(`^\`${orphan} --version\` could not be started: .*ENOENT`));
  });

  it("names a missing executable without running anything", async () => {
    expect(await checkVllmCommand("/nonexistent/vllm serve", env)).toEqual({
      ok: false,
      detail: "/nonexistent/vllm, the first word of KLR_VLLM_COMMAND, is not an executable",
    });
  });
});
