import { assert, describe, it } from "@effect/vitest"
import { assertSome, assertTrue } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as util from "node:util"
import * as zlib from "node:zlib"
import { CacheAside, Codec, MemoryCacheStore, Metrics } from "../src/index.js"

const text = (json: string) => new TextEncoder().encode(json)

/** Decodes, failing the test if the codec throws instead of answering. */
const decodeTotal = <A>(codec: Codec.Codec<A>, bytes: Uint8Array): Either.Either<Codec.Stored<A>, Codec.CodecError> => {
  let result: Either.Either<Codec.Stored<A>, Codec.CodecError> | undefined
  assert.doesNotThrow(() => {
    result = codec.decode(bytes)
  })
  return result!
}

const errorOf = <A>(result: Either.Either<A, Codec.CodecError>): Codec.CodecError => {
  assertTrue(Either.isLeft(result))
  return result.left
}

/** Every way an error can be printed: its message, JSON, inspect (with the cause chain). */
const printed = (error: Codec.CodecError): string =>
  [error.message, JSON.stringify(error), util.inspect(error, { depth: 10 }), String(error)].join("\n")

interface Tree {
  readonly children: ReadonlyArray<Tree>
}
const Tree: Schema.Schema<Tree> = Schema.Struct({ children: Schema.Array(Schema.suspend(() => Tree)) })

const User = Schema.Struct({ id: Schema.Number, name: Schema.String })

describe("Codec against hostile entries", () => {
  it("JSON nested 5,000 and 100,000 levels deep is a CodecError (or a value), never a throw", () => {
    for (const depth of [5_000, 100_000]) {
      const arrays = `{"v":${"[".repeat(depth)}${"]".repeat(depth)},"x":1}`
      const error = errorOf(decodeTotal(Codec.make(User), text(arrays)))
      assert.strictEqual(error.reason, "Decode")
      assert.isBelow(error.message.length, 200)
      const trees = `{"v":${"{\"children\":[".repeat(depth)}${"]}".repeat(depth)},"x":1}`
      const tree = decodeTotal(Codec.make(Tree), text(trees))
      assertTrue(Either.isLeft(tree) || tree.right._tag === "Value")
      // a reviver walks recursively: with a "\u" escape in the text, the parse itself overflows
      const escaped = `{"v":${"[".repeat(depth)}"\\u0041"${"]".repeat(depth)},"x":1}`
      const unknown = decodeTotal(Codec.make(Schema.Unknown), text(escaped))
      assertTrue(Either.isLeft(unknown) || unknown.right._tag === "Value")
    }
  })

  it("a schema whose transformation throws is a CodecError on both sides", () => {
    const Exploding = Schema.transform(Schema.String, Schema.String, {
      strict: true,
      decode: () => {
        throw new RangeError("boom")
      },
      encode: () => {
        throw new RangeError("boom")
      }
    })
    const codec = Codec.make(Exploding)
    assert.strictEqual(errorOf(decodeTotal(codec, text("{\"v\":\"a\",\"x\":1}"))).reason, "Decode")
    assert.strictEqual(errorOf(codec.encode({ _tag: "Value", value: "a", expiresAt: 1, delta: 0 })).reason, "Encode")
  })

  it("an encoded side JSON cannot carry (a cycle, a bigint) is an Encode CodecError, never a throw", () => {
    const codec = Codec.make(Schema.Unknown)
    const cycle: { self?: unknown } = {}
    cycle.self = cycle
    assert.strictEqual(errorOf(codec.encode({ _tag: "Value", value: cycle, expiresAt: 1, delta: 0 })).reason, "Encode")
    assert.strictEqual(errorOf(codec.encode({ _tag: "Value", value: 1n, expiresAt: 1, delta: 0 })).reason, "Encode")
  })

  it("error messages give the path and the expected type, never the stored value", () => {
    const secret = "s3cr3t-session-token-0123456789"
    const Session = Schema.Struct({ user: Schema.Struct({ id: Schema.Number, token: Schema.Number }) })
    const codec = Codec.make(Session)
    const error = errorOf(decodeTotal(codec, text(JSON.stringify({ v: { user: { id: 1, token: secret } }, x: 1 }))))
    assert.strictEqual(error.message, "value[\"user\"][\"token\"]: expected number")
    assert.notInclude(printed(error), secret)
    const notJson = errorOf(decodeTotal(codec, text(`{"v": ${secret}}`)))
    assert.notInclude(printed(notJson), secret)
    // a key of a record is stored data too: it is clipped
    const Flags = Schema.Record({ key: Schema.String, value: Schema.Boolean })
    const longKey = `${secret}${"x".repeat(100)}`
    const keyed = errorOf(decodeTotal(Codec.make(Flags), text(JSON.stringify({ v: { [longKey]: secret }, x: 1 }))))
    assert.notInclude(printed(keyed), longKey)
    assert.isBelow(keyed.message.length, 120)
    const encodeError = errorOf(
      codec.encode({ _tag: "Value", value: { user: { id: 1, token: secret } } as never, expiresAt: 1, delta: 0 })
    )
    assert.notInclude(printed(encodeError), secret)
  })

  describe("maxEntryBytes", () => {
    const codec = Codec.make(Schema.String, { maxEntryBytes: 1024 * 1024 })

    it("a plain entry larger than the limit is TooLarge, and is not parsed", () => {
      const big = text(JSON.stringify({ v: "x".repeat(2 * 1024 * 1024), x: 1 }))
      assert.strictEqual(errorOf(decodeTotal(codec, big)).reason, "TooLarge")
      // not parsed: bytes that are not even JSON are TooLarge, not Decode
      assert.strictEqual(errorOf(decodeTotal(codec, new Uint8Array(1024 * 1024 + 1).fill(0x7b))).reason, "TooLarge")
      const fits = text(JSON.stringify({ v: "x".repeat(1000), x: 1 }))
      assertTrue(Either.getOrThrow(decodeTotal(codec, fits))._tag === "Value")
    })

    it("a gzip bomb stops inflating at the limit: TooLarge", () => {
      // 64 MiB of JSON in about 64 KB of gzip
      const bomb = zlib.gzipSync(Buffer.concat([
        Buffer.from("{\"v\":\""),
        Buffer.alloc(64 * 1024 * 1024, 0x61),
        Buffer.from("\",\"x\":1}")
      ]))
      assert.isBelow(bomb.length, 100 * 1024)
      const before = process.memoryUsage().arrayBuffers
      assert.strictEqual(errorOf(decodeTotal(codec, bomb)).reason, "TooLarge")
      // gunzip never held the 64 MiB: far less than that was allocated
      assert.isBelow(process.memoryUsage().arrayBuffers - before, 32 * 1024 * 1024)
    })

    it("an entry larger than the limit is not written either: TooLarge on encode", () => {
      const result = codec.encode({ _tag: "Value", value: "x".repeat(2 * 1024 * 1024), expiresAt: 1, delta: 0 })
      assert.strictEqual(errorOf(result).reason, "TooLarge")
    })
  })

  describe("__proto__", () => {
    it("a Schema.Record value cannot swap its prototype, spelled plainly or with escapes", () => {
      const Flags = Schema.Record({ key: Schema.String, value: Schema.Unknown })
      const codec = Codec.make(Flags)
      for (
        const json of [
          "{\"v\":{\"__proto__\":{\"isAdmin\":true},\"a\":1},\"x\":1}",
          "{\"v\":{\"\\u005f_proto__\":{\"isAdmin\":true},\"a\":1},\"x\":1}",
          "{\"v\":{\"nested\":{\"__proto__\":{\"isAdmin\":true}}},\"x\":1}"
        ]
      ) {
        const decoded = Either.getOrThrow(decodeTotal(codec, text(json)))
        assertTrue(decoded._tag === "Value")
        const value = decoded.value as Record<string, unknown>
        assert.strictEqual(Object.getPrototypeOf(value), Object.prototype, json)
        assert.isUndefined((value as { isAdmin?: unknown }).isAdmin, json)
        const nested = value.nested as { isAdmin?: unknown } | undefined
        if (nested !== undefined) assert.strictEqual(Object.getPrototypeOf(nested), Object.prototype)
        assert.isFalse(Object.prototype.hasOwnProperty.call(value, "__proto__"), json)
      }
      assert.isUndefined(({} as { isAdmin?: unknown }).isAdmin)
    })

    it("a Struct value cannot swap its prototype", () => {
      const codec = Codec.make(Schema.Struct({ name: Schema.String }))
      const decoded = Either.getOrThrow(
        decodeTotal(codec, text("{\"v\":{\"name\":\"a\",\"__proto__\":{\"isAdmin\":true}},\"x\":1}"))
      )
      assertTrue(decoded._tag === "Value")
      assert.strictEqual(Object.getPrototypeOf(decoded.value), Object.prototype)
      assert.isUndefined((decoded.value as { isAdmin?: unknown }).isAdmin)
    })
  })
})

describe("CacheAside's maxEntryBytes", () => {
  const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)
  const make = (maxEntryBytes: number, loads: { count: number }) =>
    CacheAside.make({
      namespace: "big",
      key: (id: number) => String(id),
      schema: Schema.String,
      lookup: (id: number) =>
        Effect.sync(() => {
          loads.count++
          return Option.some("x".repeat(id))
        }),
      ttl: "1 minute",
      maxEntryBytes
    })

  it.scoped("a value larger than maxEntryBytes is answered but not cached; a smaller one is", () =>
    Effect.gen(function*() {
      const loads = { count: 0 }
      const cache = yield* make(1024, loads)
      for (let i = 0; i < 3; i++) assertSome(yield* cache.get(2000), "x".repeat(2000))
      assert.strictEqual(loads.count, 3, "each get of the large value loads")
      for (let i = 0; i < 3; i++) assertSome(yield* cache.get(100), "x".repeat(100))
      assert.strictEqual(loads.count, 4, "the small value is cached")
    }).pipe(Effect.provide(Services)))

  it.scoped("an invalid maxEntryBytes is InvalidOptions", () =>
    Effect.gen(function*() {
      for (const bad of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
        const error = yield* Effect.flip(make(bad, { count: 0 }))
        assert.strictEqual(error._tag, "InvalidOptions", String(bad))
      }
    }).pipe(Effect.provide(Services)))
})
