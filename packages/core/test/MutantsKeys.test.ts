/**
 * The key layout (internal/keys.ts) as a pure unit: the escaping of key text and the keys of one
 * cache, which no other core test pins down (see docs/mutation.md, "Top surviving mutants").
 */
import { assert, describe, it } from "@effect/vitest"
import * as Glob from "../src/Glob.js"
import { encode, Keys } from "../src/internal/keys.js"

const DLE = "\u0010"

describe("keys: the encoding of key text", () => {
  it("leaves well-formed text without DLE unchanged", () => {
    for (const text of ["", "plain", "user:42", "a*b?[c]", "\ud7ff", "\ue000", "\uffff", "é€"]) {
      assert.strictEqual(encode(text), text)
    }
  })

  it("keeps surrogate pairs, at the edges of both ranges", () => {
    for (const pair of ["\ud83d\ude00", "\ud800\udc00", "\ud800\udfff", "\udbff\udc00", "\udbff\udfff"]) {
      assert.strictEqual(encode(pair), pair)
      assert.strictEqual(encode(`x${pair}y`), `x${pair}y`)
    }
  })

  it("doubles DLE, wherever it is", () => {
    assert.strictEqual(encode(DLE), DLE + DLE)
    assert.strictEqual(encode(`a${DLE}b`), `a${DLE}${DLE}b`)
    assert.strictEqual(encode(`${DLE}${DLE}`), DLE.repeat(4))
    assert.strictEqual(encode(`\ud83d\ude00${DLE}`), `\ud83d\ude00${DLE}${DLE}`)
  })

  it("escapes every lone surrogate as DLE u and its four hex digits", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      ["\ud800", `${DLE}ud800`],
      ["\udbff", `${DLE}udbff`],
      ["\udc00", `${DLE}udc00`],
      ["\udfff", `${DLE}udfff`],
      ["id\ud800", `id${DLE}ud800`], // a high surrogate last
      ["\ud800x", `${DLE}ud800x`], // a high surrogate followed by no low one
      ["\ud800\ue000", `${DLE}ud800\ue000`], // ... by the code unit just past the low range
      ["\ud800\udbff", `${DLE}ud800${DLE}udbff`], // ... by another high one
      ["\ud800\ud7ff", `${DLE}ud800\ud7ff`], // ... by the code unit just before the surrogates
      ["\udc00\ud800", `${DLE}udc00${DLE}ud800`], // low then high is no pair
      ["\udc00\udc00", `${DLE}udc00${DLE}udc00`], // nor are two lows
      ["\udfff\udc00x", `${DLE}udfff${DLE}udc00x`],
      ["a\udfffb", `a${DLE}udfffb`]
    ]
    for (const [text, encoded] of cases) assert.strictEqual(encode(text), encoded, JSON.stringify(text))
  })

  it("is one-to-one: the texts Redis would merge (UTF-8 turns lone surrogates into U+FFFD) stay apart", () => {
    const texts = [
      "id",
      "id\ud800",
      "id\udbff",
      "id\udc00",
      "id\ufffd",
      `id${DLE}ud800`,
      `id${DLE}`,
      `id${DLE}${DLE}`,
      "id\ud800\udc00",
      "id\ud800\udc01"
    ]
    const encoded = texts.map(encode)
    assert.strictEqual(new Set(encoded).size, texts.length)
    // and well-formed: what a store keeps as UTF-8 reads back as the same string
    const utf8 = new TextDecoder()
    const encoder = new TextEncoder()
    for (const key of encoded) assert.strictEqual(utf8.decode(encoder.encode(key)), key)
  })
})

describe("keys: the keys of one cache", () => {
  // made inside each test, so that per-test coverage counts the constructor for these tests
  const make = () => new Keys("app[1]", "users", "v2")

  it("lays out prefix:namespace:version:key", () => {
    const keys = make()
    assert.strictEqual(keys.keyPrefix, "app[1]:users:v2:")
    assert.strictEqual(keys.full("42"), "app[1]:users:v2:42")
    assert.strictEqual(keys.full("4\ud8002"), `app[1]:users:v2:4${DLE}ud8002`)
  })

  it("the namespace pattern covers every version of the namespace and nothing else", () => {
    const keys = make()
    const matches = Glob.matcher(keys.namespacePattern)
    assert.isTrue(matches("app[1]:users:v2:42"))
    assert.isTrue(matches("app[1]:users:v1:42"))
    assert.isTrue(matches(keys.hint(keys.full("42"))))
    assert.isFalse(matches("app1:users:v2:42"))
    assert.isFalse(matches("app[1]:usersX:v2:42"))
    assert.isFalse(matches("app[1]:other:v2:42"))
  })

  it("the refresh hint is the hint prefix and the encoded user key, in a segment no version can be", () => {
    const keys = make()
    assert.strictEqual(keys.hintPrefix, "app[1]:users:v2\u0000refresh:")
    assert.strictEqual(keys.hint(keys.full("42")), "app[1]:users:v2\u0000refresh:42")
    assert.strictEqual(keys.hint(keys.full(`a${DLE}`)), `app[1]:users:v2\u0000refresh:a${DLE}${DLE}`)
    assert.notStrictEqual(keys.hint(keys.full("42")), keys.full("42"))
  })

  it("a pattern over user keys matches the full keys of the user keys it matches, escapes included", () => {
    const keys = make()
    const pattern = keys.pattern("4*")
    assert.strictEqual(pattern, `${Glob.escape("app[1]:users:v2:")}4*`)
    const matches = Glob.matcher(pattern)
    assert.isTrue(matches(keys.full("42")))
    assert.isTrue(matches(keys.full("4\ud800")))
    assert.isFalse(matches(keys.full("52")))
    assert.isFalse(matches("app[1]:users:v1:42"))
    assert.strictEqual(keys.pattern(`a${DLE}*`), `${Glob.escape("app[1]:users:v2:")}a${DLE}${DLE}*`)
    assert.isTrue(Glob.matcher(keys.pattern("id\ud800"))(keys.full("id\ud800")))
    assert.isFalse(Glob.matcher(keys.pattern("id\ud800"))(keys.full("id\udbff")))
  })
})
