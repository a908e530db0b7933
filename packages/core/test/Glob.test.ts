import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { Glob } from "../src/index.js"

/** Expected outcomes follow Redis' `stringmatchlen` (util.c). */
const cases: ReadonlyArray<readonly [pattern: string, key: string, matches: boolean]> = [
  ["*", "", true],
  ["*", "any:thing\nwith newline", true],
  ["user:*", "user:1", true],
  ["user:*", "users:1", false],
  ["user:?", "user:1", true],
  ["user:?", "user:", false],
  ["user:?", "user:12", false],
  ["h[ae]llo", "hallo", true],
  ["h[ae]llo", "hillo", false],
  ["h[^e]llo", "hallo", true],
  ["h[^e]llo", "hello", false],
  ["h[a-c]llo", "hbllo", true],
  ["h[a-c]llo", "hdllo", false],
  ["h[c-a]llo", "hbllo", true], // a reversed range is swapped
  ["[\\]]", "]", true],
  ["[a\\-z]", "-", true],
  ["[a\\-z]", "b", false],
  ["a\\*b", "a*b", true],
  ["a\\*b", "axb", false],
  ["a\\", "a\\", true], // a trailing backslash is literal
  ["[]", "a", false], // an empty class matches nothing
  ["[^]", "a", true],
  ["[abc", "b", true], // an unterminated class ends with the pattern
  ["A*", "a", false], // case-sensitive
  ["a.c", "abc", false], // regex characters are literal
  ["(x)+", "(x)+", true],
  ["^$", "^$", true]
]

describe("Glob", () => {
  it("toRegExp follows Redis' matching rules", () => {
    for (const [pattern, key, matches] of cases) {
      assert.strictEqual(Glob.toRegExp(pattern).test(key), matches, `${pattern} vs ${JSON.stringify(key)}`)
    }
  })

  it("escape makes metacharacters literal", () => {
    assert.strictEqual(Glob.escape("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f")
    assert.strictEqual(Glob.escape("plain:key-1"), "plain:key-1")
  })

  it.prop(
    "an escaped text matches itself and nothing else",
    [FastCheck.string(), FastCheck.string({ minLength: 1 })],
    ([text, suffix]) => {
      const regex = Glob.toRegExp(Glob.escape(text))
      assert.isTrue(regex.test(text))
      assert.isFalse(regex.test(text + suffix))
    }
  )

  it.prop("an escaped prefix followed by * matches exactly the keys with that prefix", [
    FastCheck.string({ unit: FastCheck.constantFrom("a", "*", "?", "[", "]", "\\", ":", "^") }),
    FastCheck.string({ unit: FastCheck.constantFrom("a", "*", "?", "[", "]", "\\", ":", "^") })
  ], ([prefix, key]) => {
    assert.strictEqual(Glob.toRegExp(`${Glob.escape(prefix)}*`).test(key), key.startsWith(prefix))
  })
})
