import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    projects: ["packages/*", "test", "test/consumer"],
    // logs of passing tests are noise (fault tests log every fallback); failing tests keep theirs
    silent: "passed-only"
  }
})
