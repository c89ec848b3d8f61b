// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

/** @param {string} tsconfigRootDir the package folder (import.meta.dirname of its eslint.config.js) */
export function gpuCanaryEslint(tsconfigRootDir) {
  return tseslint.config(
    { ignores: ["dist/**", "bin/**", "test/**", "coverage/**", "*.config.js", "eslint.config.js"] },
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
  );
}
