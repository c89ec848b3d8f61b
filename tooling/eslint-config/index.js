// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * Dates a person reads as "tonight" or "today" belong to the maintenance zone, not UTC: a night is
 * named by policy's nightOf(), an audit day by audit-feed's dayOf(). A date cut from toISOString()
 * or built from getDate() and friends is the UTC (or the machine's) date — wrong for an hour or more
 * every day — so it is refused everywhere but the modules that own dates.
 */
const DATE_HINT = "name a night with @gpu-canary/policy's nightOf() and an audit day with @gpu-canary/audit-feed's dayOf()";
export const dateRules = [
  {
    selector:
      "CallExpression[callee.property.name=/^(slice|substring|substr|split)$/][callee.object.type='CallExpression'][callee.object.callee.property.name=/^(toISOString|toJSON)$/]",
    message: `toISOString() or toJSON() cut to a date is the UTC date, not the maintenance zone's: ${DATE_HINT}`,
  },
  {
    selector: "CallExpression[callee.property.name=/^(get(UTC)?(Date|Day|FullYear|Month|Year)|toLocaleDateString)$/]",
    message: `a calendar date built from a Date's fields depends on the machine's zone or UTC: ${DATE_HINT}`,
  },
];

/**
 * zod's `z` (and its default export) is a namespace object: a bundle holding it keeps every export of
 * zod, JSON Schema and compiler included, which each command then compiles at start. `import * as z`
 * reads the same in code and lets the bundler keep only what is used (measured: README, Benchmarks).
 */
const ZOD_HINT = 'write `import * as z from "zod"`: the `z` object keeps all of zod in the bundle, loaded by every command';
export const importRules = [
  {
    selector: "ImportDeclaration[source.value='zod'][importKind!='type'] > ImportSpecifier[imported.name='z'][importKind!='type']",
    message: ZOD_HINT,
  },
  { selector: "ImportDeclaration[source.value='zod'][importKind!='type'] > ImportDefaultSpecifier", message: ZOD_HINT },
];

/**
 * @param {string} tsconfigRootDir the package folder (import.meta.dirname of its eslint.config.js)
 * @param {{ ownsDates?: string[] }} [options] files (globs from the package folder) that own calendar dates
 */
export function gpuCanaryEslint(tsconfigRootDir, options = {}) {
  return tseslint.config(
    { ignores: ["dist/**", "bundle/**", "bin/**", "test/**", "coverage/**", "*.config.js", "eslint.config.js"] },
    js.configs.recommended,
    ...tseslint.configs.strictTypeChecked,
    {
      languageOptions: {
        parserOptions: { projectService: true, tsconfigRootDir },
      },
      rules: {
        "@typescript-eslint/no-floating-promises": "error",
        "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
        "@typescript-eslint/no-unnecessary-condition": "off",
        "@typescript-eslint/no-confusing-void-expression": "off",
        "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
        "no-console": "error",
        "no-restricted-syntax": ["error", ...dateRules, ...importRules],
      },
    },
    {
      files: ["**/*.test.ts", "**/test-fixtures/**"],
      rules: {
        "@typescript-eslint/no-non-null-assertion": "off",
        "@typescript-eslint/no-unsafe-assignment": "off",
        "@typescript-eslint/no-unsafe-member-access": "off",
        "@typescript-eslint/no-unsafe-argument": "off",
        "@typescript-eslint/no-unsafe-call": "off",
        "no-console": "off",
      },
    },
    ...(options.ownsDates?.length ? [{ files: options.ownsDates, rules: { "no-restricted-syntax": ["error", ...importRules] } }] : []),
  );
}
