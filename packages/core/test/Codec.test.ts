import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as Schema from "effect/Schema"
import { Codec } from "../src/index.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String, born: Schema.Date }) {}

const user = new User({ id: 1, name: "Ada", born: new Date("1815-12-10T00:00:00Z") })
const entry = (value: User): Codec.Entry<User> => ({ _tag: "Value", value, expiresAt: 1000, delta: 5 })
const isGzip = (bytes: Uint8Array) => bytes[0] === 0x1f && bytes[1] === 0x8b

const decodeError = (result: Either.Either<unknown, Codec.CodecError>) =>
  Either.isLeft(result) && result.left._tag === "CodecError" && result.left.reason === "Decode"

describe("Codec", () => {
  it("round-trips a class with a Date", () => {
    const codec = Codec.make(User)
    const decoded = Either.getOrThrow(codec.decode(Either.getOrThrow(codec.encode(entry(user)))))
    assert.strictEqual(decoded._tag, "Value")
    if (decoded._tag !== "Value") return
    assert.instanceOf(decoded.value, User)
    assert.instanceOf(decoded.value.born, Date)
    assert.strictEqual(decoded.value.born.getTime(), user.born.getTime())
    assert.strictEqual(decoded.expiresAt, 1000)
    assert.strictEqual(decoded.delta, 5)
  })

  it("round-trips a cached \"not found\"", () => {
    const codec = Codec.make(User)
    const bytes = Either.getOrThrow(codec.encode({ _tag: "NotFound", expiresAt: 7, delta: 1 }))
    assert.deepStrictEqual(Either.getOrThrow(codec.decode(bytes)), { _tag: "NotFound", expiresAt: 7, delta: 1 })
  })

  it("compresses above the threshold only, and decodes both", () => {
    const big = new User({ ...user, name: "x".repeat(5000) })
    const codec = Codec.make(User)
    const large = Either.getOrThrow(codec.encode(entry(big)))
    const small = Either.getOrThrow(codec.encode(entry(user)))
    assert.isTrue(isGzip(large))
    assert.isBelow(large.length, 1000)
    assert.isFalse(isGzip(small))
    const decoded = Either.getOrThrow(codec.decode(large))
    assert.strictEqual(decoded._tag === "Value" ? decoded.value.name.length : 0, 5000)
    assert.isFalse(isGzip(Either.getOrThrow(Codec.make(User, { compressAbove: false }).encode(entry(big)))))
  })

  it("corrupt input is a CodecError, never a throw", () => {
    const codec = Codec.make(User)
    const encoder = new TextEncoder()
    const valid = Either.getOrThrow(Codec.make(User, { compressAbove: 0 }).encode(entry(user)))
    for (
      const bytes of [
        encoder.encode("not json"),
        encoder.encode("42"),
        encoder.encode("null"),
        encoder.encode("{\"x\":1}"),
        encoder.encode("{\"v\":{\"id\":\"one\"}}"),
        new Uint8Array([0x1f, 0x8b, 1, 2, 3]),
        valid.subarray(0, valid.length - 4),
        new Uint8Array([0, 1, 2]),
        new Uint8Array()
      ]
    ) {
      assert.isTrue(decodeError(codec.decode(bytes)), Buffer.from(bytes).toString("hex"))
    }
  })

  it("a value its schema cannot encode is an Encode CodecError", () => {
    const codec = Codec.make(Schema.Number.pipe(Schema.positive()))
    const result = codec.encode({ _tag: "Value", value: -1, expiresAt: 0, delta: 0 })
    assert.isTrue(Either.isLeft(result) && result.left.reason === "Encode")
  })

  it("lease bytes decode as a lease, never as an entry", () => {
    const codec = Codec.make(User)
    const bytes = Codec.lease("token")
    assert.isTrue(Codec.isLease(bytes))
    assert.deepStrictEqual(Either.getOrThrow(codec.decode(bytes)), { _tag: "Lease" })
  })
})
