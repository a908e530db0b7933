import js from "@eslint/js"
import effect from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"
import noChaiDeepEquality from "./eslint-rules/no-chai-deep-equality.mjs"

export default tseslint.config(
  { ignores: ["**/node_modules/**", "**/dist/**", "**/build/**", "**/.tmp/**", "**/.stryker-tmp/**", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...effect.configs.dprint,
  {
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-non-null-assertion": "off",
      "no-constant-condition": "off"
    }
  },
  {
    // chai's deep equality cannot tell Option.none() from Option.some(x): tests compare Effect data with
    // @effect/vitest/utils (see eslint-rules/no-chai-deep-equality.mjs)
    files: ["**/test/**/*.ts", "**/*.test.ts"],
    plugins: { local: { rules: { "no-chai-deep-equality": noChaiDeepEquality } } },
    rules: { "local/no-chai-deep-equality": "error" }
  }
)
