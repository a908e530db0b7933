// Mutation testing of @cache-aside/core (StrykerJS + its vitest runner). See docs/mutation.md.
//
//   pnpm mutation                                        every module of packages/core/src
//   pnpm mutation --mutate packages/core/src/Glob.ts     one module (results merge: incremental)
//
// Only the core package's own in-process tests run (vitest project "core": memory store, fault
// injection). Tests that spawn redis-server or child processes never see the active mutant, so
// they are left out. Stryker works on a copy (a sandbox under .stryker-tmp), never in place: core's
// tests import ../src, so no workspace symlink leads out of the sandbox. Never run by .ci/run.

import { fileURLToPath } from "node:url"

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  // under pnpm, Stryker cannot see its sibling packages: name the runner by its resolved path
  plugins: [fileURLToPath(import.meta.resolve("@stryker-mutator/vitest-runner"))],
  testRunner: "vitest",
  vitest: { configFile: "packages/core/vitest.config.ts", dir: "packages/core" },
  mutate: ["packages/core/src/**/*.ts", "!packages/core/src/index.ts"],
  // the sandbox gets the core package and the root configs only
  ignorePatterns: [
    "/bench",
    "/examples",
    "/test",
    "/packages/redis",
    "/docs",
    "/reports",
    "**/build",
    "**/dist",
    "**/coverage"
  ],
  coverageAnalysis: "perTest",
  incremental: true,
  incrementalFile: "reports/mutation/stryker-incremental.json",
  // a shared two-core machine: one worker by default (`--concurrency 2` if the machine is idle)
  concurrency: 1,
  // some tests run for seconds of real time; a loaded machine must not turn survivors into timeouts
  timeoutMS: 10_000,
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: "reports/mutation/index.html" },
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  clearTextReporter: { allowColor: false, logTests: false, maxTestsToLog: 0 }
}
