/**
 * Survivors of `internal/entry.ts` (see docs/mutation.md): how one read is classified at the edges
 * of its windows (fresh, stale-while-revalidate, fail-safe, a throttle's `staleUntil`), the decode
 * memo's bounds, the TTL of a value (jitter, the 1 ms floor, a TTL function's answers), the entry
 * written for a load (store TTL, signing) and the answer made from it (the schema's round trip).
 * `Entries` is driven on its own, with a clock the test sets and a counting recorder.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type { Options } from "../src/CacheAside.js"
import * as Codec from "../src/Codec.js"
import { DecodeMemo, Entries } from "../src/internal/entry.js"
import type { EntryConfig, Read } from "../src/internal/entry.js"
import * as options from "../src/internal/options.js"
import type { Event, Recorder } from "../src/Metrics.js"

const counting = () => {
  const counts: Partial<Record<Event, number>> = {}
  const recorder: Recorder = {
    increment: (event, by = 1) => {
      counts[event] = (counts[event] ?? 0) + by
    },
    observeLoad: () => {}
  }
  return { counts, recorder }
}

/** `Entries` over decoded options (the defaults of `make`), on a clock the test moves. */
const entriesOf = <A, I>(
  schema: Schema.Schema<A, I, never>,
  extra: Partial<Options<string, A, I, never, never>> = {},
  codec?: Codec.Codec<A>
) => {
  const decoded = options.decode<string, A, I, never, never>({
    namespace: "entry",
    key: (key: string) => key,
    schema,
    lookup: () => Effect.succeed(Option.none()),
    ttl: "1 minute",
    jitter: 0,
    ...extra
  } as Options<string, A, I, never, never>)
  if (Either.isLeft(decoded)) throw new Error(decoded.left)
  const config: EntryConfig<A> = codec === undefined ? decoded.right : { ...decoded.right, codec }
  const clock = { now: 0 }
  const { counts, recorder } = counting()
  const entries = new Entries<A>(config, recorder, () => clock.now)
  return { entries, clock, counts }
}

/** The bytes of a value entry fresh until `expiresAt` (written at time 0). */
const valueBytes = (value: string, expiresAt: number, staleUntil?: number) =>
  Either.getOrThrow(Codec.make(Schema.String).encode({ _tag: "Value", value, expiresAt, delta: 3, staleUntil }))

const stateAt = (entries: Entries<string>, clock: { now: number }, at: number, bytes: Uint8Array): string => {
  clock.now = at
  const read = entries.classify("cache:entry:1:k", Option.some(bytes))
  return read._tag === "Found" ? read.state : read._tag
}

/** Log lines at `level` or above, captured. */
const capture = () => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
}

describe("classify: the windows of an entry, at their edges", () => {
  it("fresh before expiry, stale for staleWhileRevalidate, fail-safe until maxStale, dead after", () => {
    const { clock, entries } = entriesOf(Schema.String, {
      staleWhileRevalidate: "10 seconds",
      failSafe: { maxStale: "1 minute" }
    })
    const bytes = valueBytes("v", 1000)
    const states = [0, 999, 1000, 10_999, 11_000, 60_999, 61_000, 1e9].map((at) => stateAt(entries, clock, at, bytes))
    deepStrictEqual(states, ["fresh", "fresh", "stale", "stale", "failSafe", "failSafe", "Dead", "Dead"])
  })

  it("without staleWhileRevalidate, an expired entry is fail-safe at once; without fail-safe it is dead", () => {
    const failSafeOnly = entriesOf(Schema.String, { failSafe: { maxStale: "1 minute" } })
    const swrOnly = entriesOf(Schema.String, { staleWhileRevalidate: "10 seconds" })
    const neither = entriesOf(Schema.String)
    const bytes = valueBytes("v", 1000)
    assert.strictEqual(stateAt(failSafeOnly.entries, failSafeOnly.clock, 1000, bytes), "failSafe")
    assert.strictEqual(stateAt(swrOnly.entries, swrOnly.clock, 10_999, bytes), "stale")
    assert.strictEqual(stateAt(swrOnly.entries, swrOnly.clock, 11_000, bytes), "Dead")
    assert.strictEqual(stateAt(neither.entries, neither.clock, 999, bytes), "fresh")
    assert.strictEqual(stateAt(neither.entries, neither.clock, 1000, bytes), "Dead")
  })

  it("a throttled entry's staleUntil ends fail-safe before maxStale does", () => {
    const { clock, entries } = entriesOf(Schema.String, { failSafe: { maxStale: "1 minute" } })
    const bytes = valueBytes("v", 1000, 30_000)
    assert.strictEqual(stateAt(entries, clock, 29_999, bytes), "failSafe")
    assert.strictEqual(stateAt(entries, clock, 30_000, bytes), "Dead")
  })

  it("what it found: the value (or None for a cached not-found), the entry and the bytes", () => {
    const { entries } = entriesOf(Schema.String)
    const bytes = valueBytes("v", 1000)
    const found = entries.classify("k", Option.some(bytes))
    assert(found._tag === "Found")
    assertSome(found.value, "v")
    assert.strictEqual(found.entry.expiresAt, 1000)
    assert.strictEqual(found.bytes, bytes)
    const notFound = Either.getOrThrow(
      Codec.make(Schema.String).encode({ _tag: "NotFound", expiresAt: 1000, delta: 0 })
    )
    const none = entries.classify("n", Option.some(notFound))
    assert(none._tag === "Found")
    assertNone(none.value)
    assert.strictEqual(none.entry._tag, "NotFound")
  })

  it("nothing stored, a lease, undecodable bytes and a newer format", () => {
    const { entries } = entriesOf(Schema.String)
    assert.strictEqual(entries.classify("k", Option.none())._tag, "Absent")
    const lease = Codec.lease("token")
    const leased = entries.classify("k", Option.some(lease))
    assert(leased._tag === "Leased")
    assert.strictEqual(leased.bytes, lease)
    const garbage = Buffer.from("{not json")
    const corrupt = entries.classify("k", Option.some(garbage))
    assert(corrupt._tag === "Corrupt")
    assert.strictEqual(corrupt.bytes, garbage)
    assert.strictEqual(corrupt.error.reason, "Decode")
    const envelope = JSON.parse(Buffer.from(valueBytes("v", 1000)).toString("utf8"))
    const newer = Buffer.from(JSON.stringify({ ...envelope, f: 2 }), "utf8")
    deepStrictEqual(entries.classify("k", Option.some(newer)), { _tag: "Newer" } as Read<string>)
  })

  it("a codec that throws while decoding gives a corrupt entry (a Decode error), not a defect", () => {
    const throwing: Codec.Codec<string> = {
      encode: Codec.make(Schema.String).encode,
      decode: () => {
        throw new Error("boom")
      }
    }
    const { entries } = entriesOf(Schema.String, {}, throwing)
    const read = entries.classify("k", Option.some(valueBytes("v", 1000)))
    assert(read._tag === "Corrupt")
    assert.strictEqual(read.error.reason, "Decode")
  })

  it("with a signing key: an entry signed for one key reads back under it, and is corrupt under another", () => {
    const { entries } = entriesOf(Schema.String, { signingKey: Redacted.make("0123456789abcdef0123456789abcdef") })
    const written = Either.getOrThrow(entries.encode("cache:entry:1:a", Option.some("v"), 1000, 0))
    const read = entries.classify("cache:entry:1:a", Option.some(written.bytes))
    assert(read._tag === "Found")
    assertSome(read.value, "v")
    assert.strictEqual(entries.classify("cache:entry:1:b", Option.some(written.bytes))._tag, "Corrupt")
    assert.strictEqual(entries.classify("cache:entry:1:a", Option.some(valueBytes("v", 1000)))._tag, "Corrupt")
  })
})

describe("the decode memo: what it keeps", () => {
  const stored = (n: number) => ({ _tag: "NotFound", expiresAt: n, delta: 0 }) as const

  it("a read of the same bytes again does not decode them again", () => {
    let decodes = 0
    const codec = Codec.make(Schema.String)
    const counted: Codec.Codec<string> = { encode: codec.encode, decode: (bytes) => (decodes++, codec.decode(bytes)) }
    const { entries } = entriesOf(Schema.String, {}, counted)
    const bytes = valueBytes("v", 1000)
    entries.classify("k", Option.some(bytes))
    entries.classify("k", Option.some(Uint8Array.from(bytes)))
    assert.strictEqual(decodes, 1)
    entries.classify("k", Option.some(valueBytes("w", 1000)))
    assert.strictEqual(decodes, 2)
  })

  it("is off when either bound is 0", () => {
    for (const [count, bytes] of [[0, 1 << 20], [1000, 0]] as const) {
      const memo = new DecodeMemo<never>(count, bytes)
      const b = new Uint8Array(4)
      memo.set("k", b, stored(1))
      assert.isUndefined(memo.get("k", b))
      assert.strictEqual(memo.size, 0)
    }
  })

  it("keeps an entry of exactly an eighth of its budget (bytes plus key), not one byte more", () => {
    const memo = new DecodeMemo<never>(100, 800)
    const fits = new Uint8Array(99) // + key "k": 100 = 800 / 8
    memo.set("k", fits, stored(1))
    assert.isDefined(memo.get("k", fits))
    const over = new Uint8Array(100).fill(1) // + key "j": 101
    memo.set("j", over, stored(2))
    assert.isUndefined(memo.get("j", over))
  })

  it("counts the key and the bytes against its budget: the least recently used goes first", () => {
    const memo = new DecodeMemo<never>(1000, 800)
    const entry = (i: number) => new Uint8Array(98).fill(i) // + a 2-character key: 100 each
    for (let i = 0; i < 8; i++) memo.set(`k${i}`, entry(i), stored(i))
    assert.strictEqual(memo.size, 8)
    memo.set("k8", entry(8), stored(8))
    assert.strictEqual(memo.size, 8)
    assert.isUndefined(memo.get("k0", entry(0)))
    assert.isDefined(memo.get("k8", entry(8)))
  })

  it("a lease is never kept, so it pushes no decoded value out", () => {
    const memo = new DecodeMemo<never>(1, 1 << 20)
    const value = new Uint8Array(4).fill(1)
    memo.set("a", value, stored(1))
    const lease = Codec.lease("t")
    memo.set("b", lease, { _tag: "Lease" })
    assert.isUndefined(memo.get("b", lease))
    assert.isDefined(memo.get("a", value))
  })

  it("delete and clear forget entries", () => {
    const memo = new DecodeMemo<never>(10, 1 << 20)
    const b = new Uint8Array(4)
    memo.set("a", b, stored(1))
    memo.set("b", b, stored(2))
    memo.delete("a")
    assert.isUndefined(memo.get("a", b))
    assert.strictEqual(memo.size, 1)
    memo.clear()
    assert.isUndefined(memo.get("b", b))
    assert.strictEqual(memo.size, 0)
  })
})

describe("ttlFor: the fresh-for TTL of a value", () => {
  it.effect("a static TTL as is without jitter; a not-found gets negativeTtl; negativeTtl 0 caches no not-found", () =>
    Effect.gen(function*() {
      const { entries } = entriesOf(Schema.String, { negativeTtl: "5 seconds" })
      assertSome(yield* entries.ttlFor(Option.some("v")), 60_000)
      assertSome(yield* entries.ttlFor(Option.none()), 5000)
      const off = entriesOf(Schema.String, { negativeTtl: 0 })
      assertNone(yield* off.entries.ttlFor(Option.none()))
    }))

  it.effect("jitter shortens the TTL by up to its fraction: ttl * (1 - jitter * r)", () =>
    Effect.gen(function*() {
      const { entries } = entriesOf(Schema.String, { jitter: 0.5 })
      assertSome(yield* Effect.withRandom(entries.ttlFor(Option.some("v")), Random.fixed([0.5])), 45_000)
      assertSome(yield* Effect.withRandom(entries.ttlFor(Option.some("v")), Random.fixed([0])), 60_000)
    }))

  it.effect("a jittered TTL is never below 1 ms (a store refuses a zero TTL)", () =>
    Effect.gen(function*() {
      const { entries } = entriesOf(Schema.String, { ttl: 1, jitter: 1 })
      assertSome(yield* Effect.withRandom(entries.ttlFor(Option.some("v")), Random.fixed([0.9999])), 1)
    }))

  it.effect("a TTL function: 1 ms is cached; under 1 ms, 0, a negative number, a zero Duration, negative or zero text is not, and is no error", () =>
    Effect.gen(function*() {
      const answers: Array<Duration.DurationInput> = [1, 0.5, 0, -5, Duration.zero, "-5 seconds", "0 millis"]
      const results: Array<Option.Option<number>> = []
      const { counts, entries } = entriesOf(Schema.Number, { ttl: (n: number) => answers[n]! })
      for (let i = 0; i < answers.length; i++) results.push(yield* entries.ttlFor(Option.some(i)))
      deepStrictEqual(results, [
        Option.some(1),
        Option.none(),
        Option.none(),
        Option.none(),
        Option.none(),
        Option.none(),
        Option.none()
      ])
      assert.strictEqual(counts.ttlErrors, undefined)
    }))

  it.effect("an invalid answer (unparsable, infinite) or a throw is not cached, counted each time and logged once", () =>
    Effect.gen(function*() {
      const logs = capture()
      const answers: Array<() => Duration.DurationInput> = [
        () => "soon" as Duration.DurationInput,
        () => Duration.infinity,
        () => {
          throw new Error("no ttl")
        },
        () => "2 seconds"
      ]
      const { counts, entries } = entriesOf(Schema.Number, { ttl: (n: number) => answers[n]!() })
      const results: Array<Option.Option<number>> = []
      for (let i = 0; i < answers.length; i++) {
        results.push(yield* entries.ttlFor(Option.some(i)).pipe(Effect.provide(logs.layer)))
      }
      deepStrictEqual(results, [Option.none(), Option.none(), Option.none(), Option.some(2000)])
      assert.strictEqual(counts.ttlErrors, 3)
      deepStrictEqual(logs.lines.filter((line) => line.includes("ttl function")), [
        "ERROR cache-aside: the ttl function gave an invalid duration; such values are not cached ttl (function result) must be a finite, non-negative duration, got \"soon\""
      ])
    }))

  it.effect("a TTL function that throws is logged as such", () =>
    Effect.gen(function*() {
      const logs = capture()
      const { counts, entries } = entriesOf(Schema.Number, {
        ttl: () => {
          throw new Error("no ttl")
        }
      })
      assertNone(yield* entries.ttlFor(Option.some(1)).pipe(Effect.provide(logs.layer)))
      assert.strictEqual(counts.ttlErrors, 1)
      deepStrictEqual(logs.lines, [
        "ERROR cache-aside: the ttl function gave an invalid duration; such values are not cached the ttl function threw"
      ])
    }))
})

describe("encode: the entry written for a value", () => {
  it("expires freshMillis from now, and the store keeps it for the longer stale window too", () => {
    const { clock, entries } = entriesOf(Schema.String, {
      staleWhileRevalidate: "10 seconds",
      failSafe: { maxStale: "1 minute" }
    })
    clock.now = 5000
    const written = Either.getOrThrow(entries.encode("k", Option.some("v"), 1000, 7))
    assert.strictEqual(Duration.toMillis(written.ttl), 61_000)
    const entry = Either.getOrThrow(Codec.make(Schema.String).decode(written.bytes))
    deepStrictEqual(entry, { _tag: "Value", value: "v", expiresAt: 6000, delta: 7 } as Codec.Stored<string>)
    const throttled = Either.getOrThrow(entries.encode("k", Option.none(), 1000, 7, 2500, 9000))
    assert.strictEqual(Duration.toMillis(throttled.ttl), 2500)
    deepStrictEqual(
      Either.getOrThrow(Codec.make(Schema.String).decode(throttled.bytes)),
      { _tag: "NotFound", expiresAt: 6000, delta: 7, staleUntil: 9000 } as Codec.Stored<string>
    )
  })

  it("a codec that throws while encoding is an Encode error, not a defect", () => {
    const throwing: Codec.Codec<string> = {
      encode: () => {
        throw new Error("boom")
      },
      decode: Codec.make(Schema.String).decode
    }
    const { entries } = entriesOf(Schema.String, {}, throwing)
    const encoded = entries.encode("k", Option.some("v"), 1000, 0)
    assert(Either.isLeft(encoded))
    assert.strictEqual(encoded.left.reason, "Encode")
  })
})

describe("prepare: the answer and the write after a load", () => {
  class User extends Schema.Class<User>("User")({ name: Schema.String }) {}

  it.effect("answers the value decoded from the bytes written (a class instance, as a hit gives)", () =>
    Effect.gen(function*() {
      const { counts, entries } = entriesOf(User)
      const loaded = { name: "ada" } as User // a plain object, as a database row would be
      const prepared = yield* entries.prepare("k", Option.some(loaded), 0)
      assertTrue(Option.isSome(prepared.value) && prepared.value.value instanceof User)
      assert(prepared.write !== undefined)
      assert.strictEqual(Duration.toMillis(prepared.write.ttl), 60_000)
      const read = entries.classify("k", Option.some(prepared.write.bytes))
      assert(read._tag === "Found")
      deepStrictEqual(read.value, prepared.value)
      assert.strictEqual(counts.writeErrors, undefined)
    }))

  it.effect("a not-found is written for negativeTtl and answered None; with negativeTtl 0 it is not written", () =>
    Effect.gen(function*() {
      const { entries } = entriesOf(Schema.String, { negativeTtl: "5 seconds" })
      const prepared = yield* entries.prepare("k", Option.none(), 0)
      assertNone(prepared.value)
      assert(prepared.write !== undefined)
      assert.strictEqual(entries.classify("k", Option.some(prepared.write.bytes))._tag, "Found")
      const off = entriesOf(Schema.String, { negativeTtl: 0 })
      const notWritten = yield* off.entries.prepare("k", Option.none(), 0)
      assertNone(notWritten.value)
      assert.isUndefined(notWritten.write)
    }))

  it.effect("a value whose TTL function says 0 is answered and not written, and is no write error", () =>
    Effect.gen(function*() {
      const { counts, entries } = entriesOf(Schema.String, { ttl: () => 0 })
      const prepared = yield* entries.prepare("k", Option.some("v"), 0)
      assertSome(prepared.value, "v")
      assert.isUndefined(prepared.write)
      assert.strictEqual(counts.writeErrors, undefined)
    }))

  it.effect("a value that does not survive its schema's round trip (NaN) is answered as loaded, not written, counted, logged", () =>
    Effect.gen(function*() {
      const logs = capture()
      const { counts, entries } = entriesOf(Schema.Number)
      const prepared = yield* entries.prepare("k", Option.some(Number.NaN), 0).pipe(Effect.provide(logs.layer))
      assertTrue(Option.isSome(prepared.value) && Number.isNaN(prepared.value.value))
      assert.isUndefined(prepared.write)
      assert.strictEqual(counts.writeErrors, 1)
      assert.strictEqual(logs.lines.filter((line) => line.startsWith("ERROR") && line.includes("round trip")).length, 1)
    }))

  it.effect("a value larger than maxEntryBytes, or one its schema cannot encode: the log says which, not 'round trip'", () =>
    Effect.gen(function*() {
      const logs = capture()
      const large = entriesOf(Schema.String, { maxEntryBytes: 64 })
      const big = yield* large.entries.prepare("k", Option.some("x".repeat(100)), 0).pipe(Effect.provide(logs.layer))
      assertSome(big.value, "x".repeat(100))
      assert.isUndefined(big.write)
      const refused = entriesOf(Schema.Int)
      yield* refused.entries.prepare("k", Option.some(1.5), 0).pipe(Effect.provide(logs.layer))
      const errors = logs.lines.filter((line) => line.startsWith("ERROR"))
      assert.strictEqual(errors.length, 2)
      assert.include(errors[0]!, "larger than maxEntryBytes")
      assert.include(errors[1]!, "cannot be encoded with its schema")
      assert.strictEqual(large.counts.writeErrors, 1)
      assert.strictEqual(refused.counts.writeErrors, 1)
    }))

  it.effect("bytes that read back as no value (a codec answering a newer format) are not written", () =>
    Effect.gen(function*() {
      const logs = capture()
      const codec = Codec.make(Schema.String)
      const odd: Codec.Codec<string> = { encode: codec.encode, decode: () => Either.right({ _tag: "Newer" }) }
      const { counts, entries } = entriesOf(Schema.String, {}, odd)
      const prepared = yield* entries.prepare("k", Option.some("v"), 0).pipe(Effect.provide(logs.layer))
      assertSome(prepared.value, "v")
      assert.isUndefined(prepared.write)
      assert.strictEqual(counts.writeErrors, 1)
      assert.isTrue(logs.lines.some((line) => line.includes("round trip") && line.includes("unexpected entry")))
    }))
})
