// @ts-check
import { Linter } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";
import { dateRules, gpuCanaryEslint, importRules } from "./index.js";

/** The messages the date rules give for a TypeScript snippet. */
function refusals(code) {
  const linter = new Linter({ configType: "flat" });
  const config = [
    { files: ["**/*.ts"], languageOptions: { parser: tseslint.parser }, rules: { "no-restricted-syntax": ["error", ...dateRules] } },
  ];
  return linter.verify(code, config, "snippet.ts").map((m) => m.message);
}

describe("the date rules", () => {
  it.each([
    ['new Date().toISOString().slice(0, 10).replace(/-/g, "")', /UTC date/],
    ["now.toISOString().substring(0, 10)", /UTC date/],
    ['at.toJSON().split("T")[0]', /UTC date/],
    ["new Date().getDate()", /calendar date built/],
    ["d.getUTCFullYear()", /calendar date built/],
    ["d.getMonth() + 1", /calendar date built/],
    ["d.toLocaleDateString()", /calendar date built/],
  ])("refuses %s, naming the functions to use", (code, text) => {
    const messages = refusals(`export const x = ${code};`);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatch(text);
    expect(messages[0]).toContain("nightOf()");
  });

  it.each(["new Date().toISOString()", "d.getUTCHours()", "d.getTime()", "name.slice(0, 10)", 'nightOf(spec, "UTC", new Date())'])(
    "lets %s through",
    (code) => {
      expect(refusals(`export const x = ${code};`)).toEqual([]);
    },
  );

  it("is on in every package's config, and off only in the files a package says own dates (where the import rules stay)", () => {
    const settingOf = (config) =>
      config.flatMap((c) => (c.rules?.["no-restricted-syntax"] ? [[c.files ?? null, c.rules["no-restricted-syntax"]]] : []));
    expect(settingOf(gpuCanaryEslint(import.meta.dirname))).toEqual([[null, ["error", ...dateRules, ...importRules]]]);
    expect(settingOf(gpuCanaryEslint(import.meta.dirname, { ownsDates: ["src/local-time.ts"] })).at(-1)).toEqual([
      ["src/local-time.ts"],
      ["error", ...importRules],
    ]);
  });
});
