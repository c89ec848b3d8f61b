// @ts-check
import { Linter } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";
import { gpuCanaryEslint, importRules } from "./index.js";

/** The messages the import rules give for a TypeScript snippet. */
function refusals(code) {
  const linter = new Linter({ configType: "flat" });
  const config = [
    {
      files: ["**/*.ts"],
      languageOptions: { parser: tseslint.parser },
      rules: { "no-restricted-syntax": ["error", ...importRules] },
    },
  ];
  return linter.verify(code, config, "snippet.ts").map((m) => m.message);
}

describe("the zod import rule", () => {
  it.each(['import { z } from "zod";', 'import z from "zod";', 'import { z as zod, string } from "zod";'])(
    "refuses %s, naming the form to use",
    (code) => {
      const messages = refusals(code);
      expect(messages).toHaveLength(1);
      expect(messages[0]).toContain('import * as z from "zod"');
    },
  );

  it.each(['import * as z from "zod";', 'import type { z } from "zod";', 'import { string } from "zod";'])("lets %s through", (code) => {
    expect(refusals(code)).toEqual([]);
  });

  it("is on in every package's config, the files that own dates included", () => {
    const settingOf = (config) => config.flatMap((c) => (c.rules?.["no-restricted-syntax"] ? [c.rules["no-restricted-syntax"]] : []));
    expect(settingOf(gpuCanaryEslint(import.meta.dirname))[0]).toEqual(expect.arrayContaining(importRules));
    expect(settingOf(gpuCanaryEslint(import.meta.dirname, { ownsDates: ["src/local-time.ts"] })).at(-1)).toEqual(["error", ...importRules]);
  });
});
