/**
 * The guard against chai's deep equality on Effect data: the lint rule `local/no-chai-deep-equality`,
 * run through the repository's own ESLint config on test files, reports every deep comparison that
 * cannot tell `Option.none()` from `Option.some(x)` and accepts the Effect-aware ones.
 */
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import { Option } from "effect"
import { ESLint } from "eslint"
import * as Fs from "node:fs"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const eslint = new ESLint({ cwd: root })

/**
 * The code the guard is run on, kept in text files: test files themselves never hold chai's deep
 * equality on Options, not even as strings.
 */
const fixture = (name: string): string =>
  Fs.readFileSync(new URL(`fixtures/no-chai-deep-equality/${name}`, import.meta.url), "utf8")

/** The lines (1-based) where the guard fires when `code` is a test file at `filePath`. */
const flagged = async (code: string, filePath = "test/Scratch.test.ts") => {
  const [result] = await eslint.lintText(code, { filePath })
  return result!.messages.filter((m) => m.ruleId === "local/no-chai-deep-equality").map((m) => m.line)
}

// one lint of a cold ESLint (config, parser, plugins) on a loaded machine; a bound against a hang only
const lintBound = 60_000

describe("lint guard: no chai deep equality in tests", () => {
  it("@effect/vitest/utils' deep equality tells None from Some (chai's compares Options through their iterators)", () => {
    assert.throws(() => deepStrictEqual<Option.Option<number>>(Option.none(), Option.some(1)))
    assert.throws(() => deepStrictEqual([Option.none<number>()], [Option.some(1)]))
    deepStrictEqual(Option.some(1), Option.some(1))
  })

  it("reports chai's assert deep equality imported from @effect/vitest, vitest or chai, under any alias", async () => {
    const code = fixture("chai-assert.txt")
    deepStrictEqual(await flagged(code), [4, 5, 6, 7])
    deepStrictEqual(await flagged(code, "packages/core/test/Scratch.test.ts"), [4, 5, 6, 7])
  }, lintBound)

  it("reports expect(...).toEqual and its kin unless addEqualityTesters() is called in the file", async () => {
    const body = fixture("expect.txt").split("\n")
    deepStrictEqual(await flagged(body.join("\n")), [3, 4, 5])
    const withTesters = ["import { addEqualityTesters } from \"@effect/vitest\"", "addEqualityTesters()", ...body]
    deepStrictEqual(await flagged(withTesters.join("\n")), [])
  }, lintBound)

  it("accepts the Effect-aware assertions and node:assert's strict deep equality", async () => {
    const code = fixture("accepted.txt")
    deepStrictEqual(await flagged(code), [])
  }, lintBound)
})
