import * as path from "node:path"
import { fileURLToPath } from "node:url"
import { defineProject } from "vitest/config"

const packed = path.join(path.dirname(fileURLToPath(import.meta.url)), ".tmp", "packed")

export default defineProject({
  plugins: [{
    // `@cache-aside/*` resolves as in a project that installed the packed tarballs: through the
    // published manifest's exports, to the built dist (setup.ts lays them out before the tests run,
    // with the importer file: Vite resolves from the root instead when the importer does not exist)
    name: "published-packages",
    enforce: "pre",
    resolveId(source, _importer, options) {
      if (!source.startsWith("@cache-aside/")) return null
      return this.resolve(source, path.join(packed, "app", "entry.js"), { ...options, skipSelf: true })
    }
  }],
  test: {
    name: "consumer",
    include: ["src/**/*.test.ts"],
    globalSetup: ["./setup.ts"],
    testTimeout: 120_000,
    hookTimeout: 300_000
  }
})
