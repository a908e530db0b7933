import { assert, describe, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import { Buffer } from "node:buffer"
import { Glob } from "../src/index.js"

/** Expected outcomes follow Redis' `stringmatchlen` (util.c). */
const cases: ReadonlyArray<readonly [pattern: string, key: string, matches: boolean]> = [
  ["*", "", true], // SCAN/KEYS treat a lone "*" as every key
  ["**", "", false],
  ["", "", true],
  ["", "a", false],
  ["*", "any:thing\nwith newline", true],
  ["user:*", "user:1", true],
  ["user:*", "user:", true],
  ["user:*", "users:1", false],
  ["user:?", "user:1", true],
  ["user:?", "user:", false],
  ["user:?", "user:12", false],
  ["*:1", "a:b:1", true],
  ["a*b*c", "abxbxc", true],
  ["a*b*c", "abxbxcd", false],
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
  ["[a-]", "^", true], // Redis reads "a-]" as the range "]" to "a", and the class stays open
  ["a\\*b", "a*b", true],
  ["a\\*b", "axb", false],
  ["a\\", "a\\", true], // a trailing backslash is literal
  ["[]", "a", false], // an empty class matches nothing
  ["[^]", "a", true],
  ["[", "a", false],
  ["[^", "a", true],
  ["[abc", "b", true], // an unterminated class ends with the pattern
  ["[abc", "bc", false],
  ["A*", "a", false], // case-sensitive
  ["a.c", "abc", false], // regex characters are literal
  ["(x)+", "(x)+", true],
  ["^$", "^$", true],
  // Redis compares bytes of the UTF-8 encoding, not characters
  ["?", "é", false],
  ["??", "é", true],
  ["????", "😀", true],
  ["[^a][^a]", "é", true],
  ["[é]", "é", false], // a class is one byte: 0xC3 or 0xA9
  ["[é][é]", "é", true],
  ["é", "é", true],
  ["[a-é]?", "é", true], // the range a..0xC3 in signed chars holds 0xC3..0xFF and 0x00..0x61
  ["[a-é]?", "b", false],
  ["[a-é]", "a", true],
  ["[\\u0001-\\u007f]*", "é", false],
  ["?", "\uD800", false], // a lone surrogate is sent as U+FFFD, three bytes
  ["???", "\uD800", true],
  ["\uFFFD", "\uDC00", true]
]

/** A string's UTF-8 bytes, one code unit a byte: what Redis is sent and matches. */
const utf8 = (text: string): string => Buffer.from(text, "utf8").toString("latin1")

/** A byte as C reads a `char` on x86-64: signed. */
const signedChar = (byte: number): number => (byte >= 128 ? byte - 256 : byte)

/**
 * A literal transcription of Redis' `stringmatchlen` (7.0, util.c) over the raw pattern, without
 * its memo: exponential on bad patterns, so only run on short ones. The matcher under test parses
 * the pattern into tokens first and never backtracks past the last star: two different shapes of
 * the same rules.
 */
const reference = (pattern: string, text: string): boolean => {
  if (pattern === "*") return true
  const go = (p: number, s: number): boolean => {
    while (p < pattern.length && s < text.length) {
      const c = pattern[p]
      if (c === "*") {
        while (p + 1 < pattern.length && pattern[p + 1] === "*") p++
        if (p === pattern.length - 1) return true
        for (; s < text.length; s++) if (go(p + 1, s)) return true
        return false
      } else if (c === "?") {
        s++
      } else if (c === "[") {
        p++
        const not = pattern[p] === "^"
        if (not) p++
        let match = false
        for (;;) {
          if (pattern[p] === "\\" && pattern.length - p >= 2) {
            p++
            if (pattern[p] === text[s]) match = true
          } else if (pattern[p] === "]") {
            break
          } else if (p >= pattern.length) {
            p--
            break
          } else if (pattern.length - p >= 3 && pattern[p + 1] === "-") {
            let start = signedChar(pattern.charCodeAt(p))
            let end = signedChar(pattern.charCodeAt(p + 2))
            if (start > end) [start, end] = [end, start]
            const code = signedChar(text.charCodeAt(s))
            p += 2
            if (code >= start && code <= end) match = true
          } else if (pattern[p] === text[s]) {
            match = true
          }
          p++
        }
        if (not) match = !match
        if (!match) return false
        s++
      } else {
        if (c === "\\" && pattern.length - p >= 2) p++
        if (pattern[p] !== text[s]) return false
        s++
      }
      p++
      if (s === text.length) {
        while (pattern[p] === "*") p++
        break
      }
    }
    return p >= pattern.length && s === text.length
  }
  return go(0, 0)
}

/** Redis' matching of a pattern against a key, both sent as UTF-8. */
const redisMatches = (pattern: string, key: string): boolean => reference(utf8(pattern), utf8(key))

const patternUnit = FastCheck.constantFrom("a", "b", "-", "*", "?", "[", "]", "^", "\\", ":")
const keyUnit = FastCheck.constantFrom("a", "b", "-", "*", "?", "[", "]", "^", "\\", ":", "c")
/** Characters of one to four UTF-8 bytes, a lone surrogate and DLE: where bytes and code units differ. */
const wideUnits = ["é", "ÿ", "\u0800", "語", "😀", "\uD800", "\u0010"] as const
const widePatternUnit = FastCheck.constantFrom("a", "-", "*", "?", "[", "]", "^", "\\", ...wideUnits)
const wideKeyUnit = FastCheck.constantFrom("a", "b", "-", "]", "^", "\\", "\u00C3", "\u00A9", ...wideUnits)

/** Generous: the matcher takes well under a millisecond; a backtracking regex took 7.9 s here. */
const HANG_BOUND_MS = 1000

describe("Glob", () => {
  it("matcher follows Redis' matching rules", () => {
    for (const [pattern, key, matches] of cases) {
      assert.strictEqual(Glob.matcher(pattern)(key), matches, `${pattern} vs ${JSON.stringify(key)}`)
      assert.strictEqual(redisMatches(pattern, key), matches, `reference: ${pattern} vs ${JSON.stringify(key)}`)
    }
  })

  it.prop(
    "matcher agrees with a transcription of Redis' stringmatchlen on random patterns and keys",
    [
      FastCheck.string({ unit: patternUnit, maxLength: 9 }),
      FastCheck.string({ unit: keyUnit, maxLength: 10 })
    ],
    ([pattern, key]) => {
      assert.strictEqual(Glob.matcher(pattern)(key), redisMatches(pattern, key), `${pattern} vs ${JSON.stringify(key)}`)
    },
    { fastCheck: { numRuns: 5000 } }
  )

  it.prop(
    "matcher agrees with Redis' stringmatchlen over UTF-8 bytes on non-ASCII patterns and keys",
    [
      FastCheck.string({ unit: widePatternUnit, maxLength: 8 }),
      FastCheck.string({ unit: wideKeyUnit, maxLength: 6 })
    ],
    ([pattern, key]) => {
      assert.strictEqual(Glob.matcher(pattern)(key), redisMatches(pattern, key), `${pattern} vs ${JSON.stringify(key)}`)
    },
    { fastCheck: { numRuns: 5000 } }
  )

  it("a pattern that makes a backtracking regex take exponential time matches in polynomial time", () => {
    const pattern = "*a*a*a*a*a*a*a*a*b"
    const match = Glob.matcher(pattern)
    const started = performance.now()
    assert.isFalse(match("a".repeat(40)))
    assert.isFalse(match("a".repeat(10_000)))
    assert.isTrue(match("a".repeat(10_000) + "b"))
    assert.isFalse(Glob.matcher("*".repeat(50) + "b")("a".repeat(10_000)))
    assert.isBelow(performance.now() - started, HANG_BOUND_MS)
  })

  it.prop(
    "classes of many items and ranges match as Redis matches them",
    [
      FastCheck.array(FastCheck.constantFrom("a", "c", "e", "g", "m", "z", "-", "^", "\\", "]"), { maxLength: 24 }),
      FastCheck.string({
        unit: FastCheck.constantFrom("a", "b", "c", "d", "f", "m", "n", "y", "z", "-", "^"),
        maxLength: 4
      })
    ],
    ([items, key]) => {
      const pattern = `*[${items.join("")}]*`
      assert.strictEqual(Glob.matcher(pattern)(key), redisMatches(pattern, key), `${pattern} vs ${JSON.stringify(key)}`)
    },
    { fastCheck: { numRuns: 3000 } }
  )

  it("a class of 100,000 items costs a lookup per byte, not a scan (a hostile bus message)", () => {
    const items = Array.from({ length: 100_000 }, (_, i) => String.fromCharCode(0x4e00 + (i % 20_000) * 2)).join("")
    const match = Glob.matcher(`*[${items}]*`)
    const keys = Array.from({ length: 2_000 }, (_, i) => `cache:user:1:key-${i}-${"x".repeat(40)}`)
    const started = performance.now()
    assert.isFalse(keys.some(match))
    assert.isTrue(match(`key-${String.fromCharCode(0x4e00 + 2 * 19_999)}`))
    // a class is a set of bytes: any character of the block shares its lead byte with an item
    assert.isTrue(match(`key-${String.fromCharCode(0x4e00 + 1)}`))
    assert.isFalse(match("key-plain-ascii"))
    assert.isBelow(performance.now() - started, HANG_BOUND_MS)
  })

  it("escape makes metacharacters literal", () => {
    assert.strictEqual(Glob.escape("a*b?c[d]e\\f"), "a\\*b\\?c\\[d\\]e\\\\f")
    assert.strictEqual(Glob.escape("plain:key-1"), "plain:key-1")
  })

  it.prop(
    "an escaped text matches itself and nothing else",
    [FastCheck.string(), FastCheck.string({ minLength: 1 })],
    ([text, suffix]) => {
      const match = Glob.matcher(Glob.escape(text))
      assert.isTrue(match(text))
      assert.isFalse(match(text + suffix))
    }
  )

  it.prop("an escaped prefix followed by * matches exactly the keys with that prefix", [
    FastCheck.string({ unit: keyUnit }),
    FastCheck.string({ unit: keyUnit })
  ], ([prefix, key]) => {
    assert.strictEqual(Glob.matcher(`${Glob.escape(prefix)}*`)(key), key.startsWith(prefix))
  })
})
