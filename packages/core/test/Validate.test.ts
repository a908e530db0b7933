/**
 * The option checks shared by `CacheAside.make` and the stores (`internal/validate.ts`): edit
 * distance, the misspelling rule, unknown keys, and the number and duration checks, case by case.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertLeft, assertRight, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Either from "effect/Either"
import * as validate from "../src/internal/validate.js"

describe("option checks", () => {
  it("edit distance counts an adjacent swap as one edit", () => {
    const cases: ReadonlyArray<readonly [string, string, number]> = [
      ["", "", 0],
      ["", "abc", 3],
      ["abc", "abc", 0],
      ["a", "b", 1],
      ["ab", "ba", 1],
      ["abcd", "acbd", 1],
      ["wait", "wiat", 1],
      ["hard", "hrad", 1],
      ["ca", "abc", 3],
      ["kitten", "sitting", 3],
      ["negativettl", "negativetl", 1]
    ]
    for (const [a, b, d] of cases) {
      assert.strictEqual(validate.distance(a, b), d, `${a} / ${b}`)
      assert.strictEqual(validate.distance(b, a), d, `${b} / ${a}`)
    }
  })

  it("a misspelling is the nearest option, case aside, within two edits (one for short names)", () => {
    const names = ["ttl", "negativeTtl", "key", "lookup", "lookupTimeout", "wait"]
    assert.strictEqual(validate.misspelled("negativeTTL", names), "negativeTtl")
    assert.strictEqual(validate.misspelled("TTL", names), "ttl")
    assert.strictEqual(validate.misspelled("tll", names), "ttl") // a swap: one edit
    assert.strictEqual(validate.misspelled("wiat", names), "wait")
    assert.isUndefined(validate.misspelled("waxx", names), "two edits from a four-letter name")
    assert.isUndefined(validate.misspelled("ref", names), "two edits from key")
    assert.strictEqual(validate.misspelled("lookupTimout", names), "lookupTimeout")
    assert.strictEqual(validate.misspelled("lookp", names), "lookup") // nearer than lookupTimeout
    assert.isUndefined(validate.misspelled("enabled", names))
    assert.isUndefined(validate.misspelled("x".repeat(10_000), names))
  })

  it("unknown keys: a misspelling is the message; the others are answered, quoted, long ones clipped", () => {
    const names = { wait: true, poll: true } as const
    assertRight(validate.known("lock", undefined, names), [])
    assertRight(validate.known("lock", { wait: 1, poll: 2 }, names), [])
    assertLeft(validate.known("lock", { wiat: 1 }, names), "unknown option \"lock.wiat\"; did you mean \"lock.wait\"?")
    assertLeft(validate.known(undefined, { Poll: 1 }, names), "unknown option \"Poll\"; did you mean \"poll\"?")
    const long = "z".repeat(100)
    deepStrictEqual(
      validate.known("lock", { label: "x", [long]: 1 }, names),
      Either.right(["\"lock.label\"", `"lock.${"z".repeat(64)}…"`])
    )
  })

  it("numbers: bounds inclusive, the value shown as given", () => {
    assertRight(validate.integer("n", 10, 0, 10), 10)
    assertRight(validate.integer("n", 0, 0, 10), 0)
    assertLeft(validate.integer("n", 11, 0, 10), "n must be an integer between 0 and 10, got 11")
    assertLeft(
      validate.integer("n", Number.NaN, 0),
      `n must be an integer between 0 and ${Number.MAX_SAFE_INTEGER}, got NaN`
    )
    assertLeft(validate.integer("n", "5", 0, 10), "n must be an integer between 0 and 10, got \"5\"")
    assertRight(validate.fraction("f", 1, 0, 1), 1)
    assertLeft(
      validate.fraction("f", Number.POSITIVE_INFINITY, 0, 1),
      "f must be a number between 0 and 1, got Infinity"
    )
  })

  it("durations: negative numbers, bigints and strings are refused, not clamped", () => {
    assert.isTrue(Either.isLeft(validate.duration("d", -1)))
    assert.isTrue(Either.isLeft(validate.duration("d", -1n)))
    assert.isTrue(Either.isLeft(validate.duration("d", " -5 seconds")))
    assertLeft(validate.duration("d", -1n), "d must be a finite, non-negative duration, got -1")
    deepStrictEqual(Either.map(validate.duration("d", 0n), Duration.toMillis), Either.right(0))
    deepStrictEqual(Either.map(validate.duration("d", 5_000_000n), Duration.toMillis), Either.right(5))
    assertLeft(validate.duration("d", "5 seconds", { max: 1000 }), "d must be between 0 and 1s, got \"5 seconds\"")
  })
})
