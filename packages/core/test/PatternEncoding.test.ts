/**
 * `invalidatePattern` over keys the store cannot hold as they are (DLE, lone surrogates: escaped,
 * see internal/keys.ts), over non-ASCII keys (matched by UTF-8 bytes, as Redis matches), and with
 * hostile patterns (bounded). Memory store only; the Redis differential is test/PatternBytes.test.ts.
 */
import { CacheAside, CacheStore, Glob, MemoryCacheStore } from "@cache-aside/core"
import { assert, describe, it } from "@effect/vitest"
import { assertFailure, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import { Cause, Duration, Effect, Exit, Option, Schema } from "effect"
import * as FastCheck from "effect/FastCheck"
import { Keys, storePatterns } from "../src/internal/keys.js"

/** A string's bytes as Redis would hold it if it could: UTF-8, a lone surrogate as its three WTF-8 bytes. */
const wtf8 = (text: string): string => {
  let out = ""
  for (const char of text) { // iterates code points; a lone surrogate is one
    const point = char.codePointAt(0)!
    if (point < 0x80) out += String.fromCharCode(point)
    else if (point < 0x800) out += String.fromCharCode(0xc0 | (point >> 6), 0x80 | (point & 0x3f))
    else if (point < 0x10000) {
      out += String.fromCharCode(0xe0 | (point >> 12), 0x80 | ((point >> 6) & 0x3f), 0x80 | (point & 0x3f))
    } else {
      out += String.fromCharCode(
        0xf0 | (point >> 18),
        0x80 | ((point >> 12) & 0x3f),
        0x80 | ((point >> 6) & 0x3f),
        0x80 | (point & 0x3f)
      )
    }
  }
  return out
}

/** Whether a glob over user keys matches a user key: Redis' rules over the bytes of both. */
const userMatches = (pattern: string, key: string): boolean => Glob.bytesMatcher(wtf8(pattern))(wtf8(key))

/** A key the store holds escaped: with a DLE or a lone surrogate. */
const escaped = (key: string): boolean =>
  key.includes("\u0010") || /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(key)

const cacheOf = (namespace: string) =>
  CacheAside.make({
    namespace,
    key: (k: string) => k,
    schema: Schema.String,
    lookup: (k: string) => Effect.succeed(Option.some(`v:${k}`)),
    ttl: "1 hour"
  })

/** Fills every key, runs the pattern, and answers the keys no longer cached (or the failure). */
const deletedBy = (keys: ReadonlyArray<string>, pattern: string) =>
  Effect.gen(function*() {
    const cache = yield* cacheOf("pe")
    for (const key of keys) yield* cache.get(key)
    const exit = yield* Effect.exit(cache.invalidatePattern(pattern))
    const deleted: Array<string> = []
    for (const key of keys) if (Option.isNone(yield* cache.getOption(key))) deleted.push(key)
    return { exit, deleted }
  }).pipe(Effect.scoped, Effect.provide(MemoryCacheStore.layer()))

const keyUnit = FastCheck.constantFrom("a", "b", "é", "😀", "語", "\u0010", "\uD800", "\uDC00", "u", "d", "8", "0", "*")
const patternUnit = FastCheck.constantFrom(
  "a",
  "é",
  "😀",
  "\u0010",
  "\uD800",
  "u",
  "0",
  "*",
  "?",
  "[",
  "]",
  "^",
  "-",
  "\\"
)

describe("invalidatePattern over escaped and non-ASCII keys", () => {
  it.effect("? matches a one-byte key, DLE included; a class naming lone surrogates is refused, deleting nothing", () =>
    Effect.gen(function*() {
      const keys = ["x", "\u0010", "\uD800", "user1", "b", "8", "é"]
      const one = yield* deletedBy(keys, "?")
      assertTrue(Exit.isSuccess(one.exit))
      for (const key of ["x", "\u0010", "b", "8"]) assertTrue(one.deleted.includes(key), JSON.stringify(key))
      for (const key of ["user1", "é"]) assertTrue(!one.deleted.includes(key), JSON.stringify(key))
      // a lone surrogate is three bytes: "???" matches it ("?" removes it too: an escaped key, over-deleted)
      assertTrue((yield* deletedBy(keys, "???")).deleted.includes("\uD800"))

      const refused = yield* deletedBy(keys, "[\uD800-\uDBFF]*")
      deepStrictEqual(refused.deleted, [])
      assertFailure(
        Exit.mapError(refused.exit, (e) => e.operation),
        Cause.fail("invalidatePattern")
      )
    }))

  it.effect("an escaped key, as a pattern, deletes exactly that key", () =>
    Effect.gen(function*() {
      const keys = [
        "\u0010",
        "\u0010\u0010",
        "\uD800",
        "\uDBFF",
        "\uD800\uDC00",
        "\u0010ud800",
        "\uFFFD",
        "a\u0010b",
        "é"
      ]
      for (const key of keys) {
        const { deleted } = yield* deletedBy(keys, Glob.escape(key))
        deepStrictEqual(deleted, [key])
      }
    }))

  it.effect.prop(
    "a pattern deletes every key it matches as a glob over the keys' bytes, and exactly those among unescaped keys",
    [
      FastCheck.uniqueArray(FastCheck.string({ unit: keyUnit, minLength: 1, maxLength: 4 }), { maxLength: 8 }),
      FastCheck.string({ unit: patternUnit, maxLength: 6 })
    ],
    ([keys, pattern]) =>
      Effect.gen(function*() {
        const { deleted, exit } = yield* deletedBy(keys, pattern)
        if (Exit.isFailure(exit)) {
          // refused: a class holding a lone surrogate, nothing deleted
          assertTrue(/\[/.test(pattern), pattern)
          deepStrictEqual(deleted, [])
          return
        }
        for (const key of keys) {
          const matches = userMatches(pattern, key)
          if (matches) assertTrue(deleted.includes(key), `${JSON.stringify(pattern)} missed ${JSON.stringify(key)}`)
          else if (!escaped(key)) {
            assertTrue(!deleted.includes(key), `${JSON.stringify(pattern)} deleted ${JSON.stringify(key)}`)
          }
        }
      }),
    { fastCheck: { numRuns: 200 }, timeout: 60_000 }
  )

  it("the store patterns: exact where nothing is escaped, plus one over escaped keys when ? or a class is used", () => {
    const of = (pattern: string) => {
      const patterns = storePatterns(pattern)
      assert.isTrue(patterns._tag === "Right")
      return patterns._tag === "Right" ? patterns.right : []
    }
    deepStrictEqual(of("user:*"), ["user:*"])
    deepStrictEqual(of("a\u0010*"), ["a\u0010\u0010*"])
    deepStrictEqual(of("id\uD800"), ["id\u0010ud800"])
    deepStrictEqual(of("a\\*b"), ["a\\*b"])
    deepStrictEqual(of("u:?:x"), ["u:?:x", "u:*\u0010*:x"])
    deepStrictEqual(of("[ab]"), ["[ab]", "*\u0010*"])
    deepStrictEqual(of("\u0010?"), ["\u0010\u0010?", "\u0010\u0010*"])
    // escaped twice: a lone high surrogate then a lone low one are two escapes, not a pair
    deepStrictEqual(of("\uD800\\\uDC00"), ["\u0010ud800\u0010udc00"])
  })

  it("a pattern over 1,024 bytes is refused; one of 1,024 is not", () => {
    assert.strictEqual(storePatterns("a".repeat(1024))._tag, "Right")
    assert.strictEqual(storePatterns("é".repeat(512))._tag, "Right")
    assert.strictEqual(storePatterns("é".repeat(513))._tag, "Left")
    const keys = new Keys("cache", "ns", "1")
    assert.throws(() => keys.pattern("*".repeat(1025)))
  })
})

describe("hostile patterns are bounded", () => {
  it.effect("a 50 KB pattern is refused before the store sees it; the cached long key stays", () =>
    Effect.gen(function*() {
      const key = "a".repeat(100_000)
      const { deleted, exit } = yield* deletedBy([key, "b"], "*" + "a".repeat(50_000) + "b*")
      deepStrictEqual(deleted, [])
      assertFailure(Exit.mapError(exit, (e) => e.operation), Cause.fail("invalidatePattern"))
    }))

  it.effect("the memory store refuses a deletePattern past its work budget, deleting nothing", () =>
    Effect.gen(function*() {
      const store = yield* MemoryCacheStore.make()
      const bytes = new Uint8Array([1])
      yield* store.set("a".repeat(100_000), bytes, Duration.hours(1))
      yield* store.set("b", bytes, Duration.hours(1))
      const exit = yield* Effect.exit(store.deletePattern("*" + "a".repeat(1_000) + "b*"))
      assertTrue(Exit.isFailure(exit))
      assertFailure(
        Exit.mapError(exit, (e) => e instanceof CacheStore.CacheUnavailable && e.replied === true ? e.operation : "?"),
        Cause.fail("deletePattern")
      )
      assertTrue(Option.isSome(yield* store.get("a".repeat(100_000))))
      assertTrue(Option.isSome(yield* store.get("b")))
      // an ordinary pattern over the same keys is answered
      assert.strictEqual(yield* store.deletePattern("b*"), 1)
    }))
})
