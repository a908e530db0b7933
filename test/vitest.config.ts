import { defineProject } from "vitest/config"

export default defineProject({
  test: {
    name: "integration",
    include: ["**/*.test.ts"],
    // the consumer project is its own vitest project, on the packed packages
    exclude: ["**/node_modules/**", "consumer/**"],
    testTimeout: 30_000,
    hookTimeout: 60_000
  }
})
