import { assert, describe, it } from "@effect/vitest"
import { assertLeft, assertRight, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import * as zlib from "node:zlib"
import { Codec } from "../src/index.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String, born: Schema.Date }) {}

const user = new User({ id: 1, name: "Ada", born: new Date("1815-12-10T00:00:00Z") })
const entry = (value: User): Codec.Entry<User> => ({ _tag: "Value", value, expiresAt: 1000, delta: 5 })
const isGzip = (bytes: Uint8Array) => bytes[0] === 0x1f && bytes[1] === 0x8b
const text = (json: string) => new TextEncoder().encode(json)

const reasonOf = (result: Either.Either<unknown, Codec.CodecError>) =>
  Either.isLeft(result) ? result.left.reason : "none"

describe("Codec", () => {
  it("round-trips a class with a Date", () => {
    const codec = Codec.make(User)
    const decoded = Either.getOrThrow(codec.decode(Either.getOrThrow(codec.encode(entry(user)))))
    assertTrue(decoded._tag === "Value")
    assert.instanceOf(decoded.value, User)
    assert.instanceOf(decoded.value.born, Date)
    assert.strictEqual(decoded.value.born.getTime(), user.born.getTime())
    assert.strictEqual(decoded.expiresAt, 1000)
    assert.strictEqual(decoded.delta, 5)
  })

  it("round-trips a cached \"not found\"", () => {
    const codec = Codec.make(User)
    const bytes = Either.getOrThrow(codec.encode({ _tag: "NotFound", expiresAt: 7, delta: 1 }))
    assertRight(codec.decode(bytes), { _tag: "NotFound", expiresAt: 7, delta: 1 })
  })

  it("compresses above the threshold only (default 2 KiB), and decodes both", () => {
    const codec = Codec.make(User)
    const large = Either.getOrThrow(codec.encode(entry(new User({ ...user, name: "x".repeat(5000) }))))
    const justBelow = Either.getOrThrow(codec.encode(entry(new User({ ...user, name: "x".repeat(1900) }))))
    const justAbove = Either.getOrThrow(codec.encode(entry(new User({ ...user, name: "x".repeat(2100) }))))
    assert.isTrue(isGzip(large))
    assert.isBelow(large.length, 1000)
    assert.isFalse(isGzip(justBelow))
    assert.isTrue(isGzip(justAbove))
    assert.isFalse(isGzip(Either.getOrThrow(codec.encode(entry(user)))))
    const decoded = Either.getOrThrow(codec.decode(large))
    assert.strictEqual(decoded._tag === "Value" ? decoded.value.name.length : 0, 5000)
    assert.isFalse(isGzip(Either.getOrThrow(Codec.make(User, { compressAbove: false }).encode(entry(user)))))
    assert.isTrue(isGzip(Either.getOrThrow(Codec.make(User, { compressAbove: 0 }).encode(entry(user)))))
  })

  it("corrupt input is a Decode CodecError, never a throw", () => {
    const codec = Codec.make(User)
    const valid = Either.getOrThrow(Codec.make(User, { compressAbove: 0 }).encode(entry(user)))
    for (
      const bytes of [
        text("not json"),
        text("42"),
        text("null"),
        text("[]"),
        text("{\"x\":1}"),
        text("{\"v\":{\"id\":\"one\"}}"),
        text("{\"v\":{\"id\":1,\"name\":\"Ada\",\"born\":\"1815-12-10T00:00:00.000Z\"},\"x\":\"soon\"}"),
        text("{\"v\":{\"id\":1,\"name\":\"Ada\",\"born\":\"1815-12-10T00:00:00.000Z\"},\"d\":-1}"),
        text("{\"v\":{\"id\":1,\"name\":\"Ada\",\"born\":\"1815-12-10T00:00:00.000Z\"},\"f\":\"2\"}"),
        new Uint8Array([0x1f, 0x8b, 1, 2, 3]),
        valid.subarray(0, valid.length - 4),
        new Uint8Array([0, 1, 2]),
        new Uint8Array()
      ]
    ) {
      assert.strictEqual(reasonOf(codec.decode(bytes)), "Decode", Buffer.from(bytes).toString("hex"))
    }
  })

  it("a value its schema cannot encode is an Encode CodecError", () => {
    const codec = Codec.make(Schema.Number.pipe(Schema.positive()))
    assert.strictEqual(reasonOf(codec.encode({ _tag: "Value", value: -1, expiresAt: 0, delta: 0 })), "Encode")
  })

  it("lease bytes decode as a lease, never as an entry", () => {
    const codec = Codec.make(User)
    const bytes = Codec.lease("token")
    assert.isTrue(Codec.isLease(bytes))
    assertRight(codec.decode(bytes), { _tag: "Lease" })
  })

  describe("format version", () => {
    const value = { id: 1, name: "Ada", born: "1815-12-10T00:00:00.000Z" }

    it("today's entries carry no version field and read as version 1; an explicit version 1 reads too", () => {
      const codec = Codec.make(User)
      const bytes = Either.getOrThrow(codec.encode(entry(user)))
      assert.notProperty(JSON.parse(Buffer.from(bytes).toString("utf8")), "f")
      assertTrue(Either.getOrThrow(codec.decode(text(JSON.stringify({ v: value, x: 1, d: 0, f: 1 }))))._tag === "Value")
      assertTrue(Either.getOrThrow(codec.decode(text(JSON.stringify({ v: value, x: 1, d: 0 }))))._tag === "Value")
    })

    it("a newer version is Newer (a miss left alone), whatever its value looks like, plain or gzipped", () => {
      const codec = Codec.make(User)
      const newer = JSON.stringify({ f: Codec.formatVersion + 1, w: "a shape this release does not know" })
      assertRight(codec.decode(text(newer)), { _tag: "Newer" })
      assertRight(codec.decode(zlib.gzipSync(newer)), { _tag: "Newer" })
      assertRight(codec.decode(text(JSON.stringify({ v: value, f: 7 }))), { _tag: "Newer" })
    })
  })

  describe("options", () => {
    it("validateOptions rejects sizes that cannot work", () => {
      for (
        const options of [
          { maxEntryBytes: 0 },
          { maxEntryBytes: -1 },
          { maxEntryBytes: 1.5 },
          { maxEntryBytes: Number.NaN },
          { maxEntryBytes: Number.POSITIVE_INFINITY },
          { maxEntryBytes: 2 ** 40 },
          { compressAbove: -1 },
          { compressAbove: Number.NaN },
          { compressAbove: 0.5 }
        ]
      ) {
        assert.isTrue(Either.isLeft(Codec.validateOptions(options)), JSON.stringify(options))
      }
      deepStrictEqual(
        Codec.validateOptions({ maxEntryBytes: 1024, compressAbove: false }),
        Either.right({
          maxEntryBytes: 1024,
          compressAbove: false
        })
      )
      assertLeft(
        Codec.validateOptions({ maxEntryBytes: 0 }),
        "maxEntryBytes must be an integer number of bytes between 64 and 536870912, got 0"
      )
      // not an object: a message (it threw a TypeError), and `make` falls back to the defaults
      assertLeft(Codec.validateOptions(null as unknown as Codec.Options), "options must be an object, got null")
      const codec = Codec.make(Schema.String, null as unknown as Codec.Options)
      assertTrue(Either.isRight(codec.encode({ _tag: "Value", value: "x", expiresAt: 0, delta: 0 })))
    })
  })
})
