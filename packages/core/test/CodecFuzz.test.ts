import { assert, describe, it } from "@effect/vitest"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import * as zlib from "node:zlib"
import { Codec } from "../src/index.js"

/** A schema with the shapes hostile bytes aim at: a class, a record, an array, a Date, a recursion. */
interface Node {
  readonly label: string
  readonly next: ReadonlyArray<Node>
}
const Node: Schema.Schema<Node> = Schema.Struct({
  label: Schema.String,
  next: Schema.Array(Schema.suspend(() => Node))
})
class Account extends Schema.Class<Account>("Account")({
  id: Schema.Number,
  since: Schema.Date,
  flags: Schema.Record({ key: Schema.String, value: Schema.Boolean }),
  tree: Schema.optional(Node)
}) {}

const maxEntryBytes = 256 * 1024
const codec = Codec.make(Account, { maxEntryBytes })
const isAccount = Schema.is(Account)

/**
 * The decoder's contract: it answers (never throws), and what it answers as a value is a valid
 * `Account` (a class instance whose fields pass the schema), with finite expiry fields.
 */
const checkDecode = (bytes: Uint8Array): void => {
  let result: Either.Either<Codec.Stored<Account>, Codec.CodecError> | undefined
  assert.doesNotThrow(() => {
    result = codec.decode(bytes)
  })
  if (result === undefined || Either.isLeft(result)) {
    assert.strictEqual(result?.left._tag, "CodecError")
    assert.isBelow(result!.left.message.length, 300)
    return
  }
  const stored = result.right
  if (stored._tag === "Value") {
    assert.isTrue(isAccount(stored.value))
    assert.instanceOf(stored.value, Account)
    assert.strictEqual(Object.getPrototypeOf(stored.value.flags), Object.prototype)
  }
  if (stored._tag === "Value" || stored._tag === "NotFound") {
    assert.isFalse(Number.isNaN(stored.expiresAt))
    assert.isTrue(Number.isFinite(stored.delta) && stored.delta >= 0)
  }
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value) ?? "null", "utf8")

/** Envelopes around arbitrary JSON: the likeliest shapes to slip through. */
const envelope = FastCheck.record({
  v: FastCheck.oneof(
    FastCheck.jsonValue(),
    FastCheck.record({
      id: FastCheck.oneof(FastCheck.double(), FastCheck.jsonValue()),
      since: FastCheck.oneof(FastCheck.date({ noInvalidDate: false }).map((d) => String(d)), FastCheck.jsonValue()),
      flags: FastCheck.dictionary(
        FastCheck.oneof(FastCheck.string(), FastCheck.constant("__proto__")),
        FastCheck.oneof(FastCheck.boolean(), FastCheck.jsonValue())
      )
    }, { requiredKeys: [] })
  ),
  n: FastCheck.oneof(FastCheck.constant(1), FastCheck.jsonValue()),
  x: FastCheck.oneof(FastCheck.double(), FastCheck.jsonValue()),
  d: FastCheck.oneof(FastCheck.double(), FastCheck.jsonValue()),
  f: FastCheck.oneof(FastCheck.integer({ min: -2, max: 4 }), FastCheck.jsonValue())
}, { requiredKeys: [] }).map(json)

/** A value nested `depth` levels: arrays, objects, or the schema's own recursion. */
const nested = FastCheck.tuple(
  FastCheck.oneof(FastCheck.integer({ min: 1, max: 1_000 }), FastCheck.integer({ min: 1_000, max: 100_000 })),
  FastCheck.constantFrom("array", "object", "node", "escaped")
).map(([depth, kind]) => {
  const inner = kind === "array"
    ? `${"[".repeat(depth)}${"]".repeat(depth)}`
    : kind === "object"
    ? `${"{\"a\":".repeat(depth)}1${"}".repeat(depth)}`
    : kind === "node"
    ? `${"{\"label\":\"n\",\"next\":[".repeat(depth)}${"]}".repeat(depth)}`
    : `${"[".repeat(depth)}"\\u0041"${"]".repeat(depth)}`
  return Buffer.from(`{"v":{"id":1,"since":"2020-01-01T00:00:00.000Z","flags":{},"tree":${inner}},"x":1}`)
})

/** Valid entries, then damaged: truncated, bit-flipped, gzipped (and damaged after gzip). */
const account = FastCheck.record({
  // JSON carries no NaN or infinity (they become null): the read path catches those by decoding
  // what it encoded, before caching
  id: FastCheck.double({ noNaN: true, noDefaultInfinity: true }),
  since: FastCheck.date({ noInvalidDate: true }),
  flags: FastCheck.dictionary(FastCheck.string(), FastCheck.boolean())
}).map((fields) => new Account(fields))
const damaged = FastCheck.tuple(
  account,
  FastCheck.boolean(),
  FastCheck.nat(),
  FastCheck.nat(),
  FastCheck.integer({ min: 0, max: 255 })
).map(([value, gzip, cut, at, byte]) => {
  const bytes = Either.getOrThrow(codec.encode({ _tag: "Value", value, expiresAt: 1, delta: 0 }))
  const raw = gzip ? zlib.gzipSync(bytes) : Buffer.from(bytes)
  const copy = Buffer.from(raw.subarray(0, cut % (raw.length + 1)))
  if (copy.length > 0) copy[at % copy.length] = byte
  return copy
})

const gzipped = FastCheck.oneof(envelope, FastCheck.uint8Array({ maxLength: 512 }).map(Buffer.from)).map((bytes) =>
  zlib.gzipSync(bytes)
)

/** Bombs small enough for a test: each inflates past maxEntryBytes from a few KB. */
const bombs = [1, 4, 16].map((mib) =>
  zlib.gzipSync(Buffer.concat([Buffer.from("{\"v\":\""), Buffer.alloc(mib * 1024 * 1024, 0x20), Buffer.from("\"}")]))
)
const bomb = FastCheck.constantFrom(...bombs)

describe("Codec fuzz", () => {
  it.prop(
    "decoding random bytes never throws and never answers an invalid value",
    [
      FastCheck.uint8Array({ maxLength: 2048 })
    ],
    ([bytes]) => checkDecode(bytes),
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "decoding random JSON and random envelopes never throws and never answers an invalid value",
    [
      FastCheck.oneof(FastCheck.jsonValue().map(json), envelope)
    ],
    ([bytes]) => checkDecode(bytes),
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop("decoding values nested up to 100,000 levels never throws", [nested], ([bytes]) => checkDecode(bytes), {
    fastCheck: { numRuns: 60 }
  })

  it.prop(
    "decoding damaged entries, random gzip and gzip bombs never throws",
    [
      FastCheck.oneof(damaged, gzipped, bomb)
    ],
    ([bytes]) => checkDecode(bytes),
    { fastCheck: { numRuns: 400 } }
  )

  it("a gzip bomb is TooLarge", () => {
    for (const bytes of bombs) {
      const result = codec.decode(bytes)
      assert.isTrue(Either.isLeft(result) && result.left.reason === "TooLarge")
    }
  })

  it.prop("every valid Account round-trips", [account], ([value]) => {
    const bytes = Either.getOrThrow(codec.encode({ _tag: "Value", value, expiresAt: 5, delta: 1 }))
    const stored = Either.getOrThrow(codec.decode(bytes))
    assert.isTrue(stored._tag === "Value" && isAccount(stored.value))
  }, { fastCheck: { numRuns: 1000 } })
})
