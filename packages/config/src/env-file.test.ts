import { describe, expect, it } from "vitest";
import { parseEnvFile } from "./env-file.ts";

describe("parseEnvFile", () => {
  it("reads KEY=value lines with comments, export, quotes and CRLF", () => {
    const text = [
      "# gpu canary",
      "KLR_CANARY_MODE=predictive",
      "export KLR_CANARY_PORT=9011",
      'KLR_VLLM_COMMAND="python3 -m vllm.entrypoints.openai.api_server --enforce-eager"',
      "KLR_WHISPER_STOP_COMMAND='systemctl stop whisper@$SIZE'",
      "KLR_CANARY_TIMEOUT=30 # seconds",
      "",
      "PATH=/usr/bin\r",
      'KLR_QUOTED="say \\"hi\\"" # trailing comment',
    ].join("\n");
    const { entries, errors } = parseEnvFile(text, "/h/.kloros_env");
    expect(errors).toEqual([]);
    expect(Object.fromEntries([...entries].map(([k, v]) => [k, v.value]))).toEqual({
      KLR_CANARY_MODE: "predictive",
      KLR_CANARY_PORT: "9011",
      KLR_VLLM_COMMAND: "python3 -m vllm.entrypoints.openai.api_server --enforce-eager",
      KLR_WHISPER_STOP_COMMAND: "systemctl stop whisper@$SIZE",
      KLR_CANARY_TIMEOUT: "30",
      PATH: "/usr/bin",
      KLR_QUOTED: 'say "hi"',
    });
    expect(entries.get("KLR_CANARY_PORT")?.line).toBe(3);
  });

  it("lets the last of a repeated key win, as the checklist's appended KLR_CANARY_MODE line expects", () => {
    const { entries } = parseEnvFile("KLR_CANARY_MODE=predictive\nKLR_CANARY_MODE=canary\n", "f");
    expect(entries.get("KLR_CANARY_MODE")).toEqual({ value: "canary", line: 2 });
  });

  it("reports a line it cannot read with its number: an error for a KLR_ setting, a warning for the shell's own lines", () => {
    const { errors, warnings, entries } = parseEnvFile(
      'KLR_A=1\njust some words\nKLR_B="unclosed\n1BAD=2\nalias ll=ls\nPATH+=:/opt/bin\nKLR_C+=x\nNAME="open\n',
      "/h/.kloros_env",
    );
    expect(errors).toEqual(["/h/.kloros_env:3: KLR_B has an unclosed quote", '/h/.kloros_env:7: expected KEY=value, got "KLR_C+=x"']);
    expect(warnings).toEqual([
      '/h/.kloros_env:2: expected KEY=value, got "just some words" (not a gpu-canary setting: ignored)',
      '/h/.kloros_env:4: expected KEY=value, got "1BAD=2" (not a gpu-canary setting: ignored)',
      '/h/.kloros_env:5: expected KEY=value, got "alias ll=ls" (not a gpu-canary setting: ignored)',
      '/h/.kloros_env:6: expected KEY=value, got "PATH+=:/opt/bin" (not a gpu-canary setting: ignored)',
      "/h/.kloros_env:8: NAME has an unclosed quote (ignored)",
    ]);
    expect([...entries.keys()]).toEqual(["KLR_A"]);
  });
});
