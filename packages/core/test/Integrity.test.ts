/**
 * Entry integrity (issue 9, item 9) on the memory store: with a signing key, an entry planted by
 * whoever can write to the store (well-formed but unsigned, signed with another key, or copied
 * from another key) is a counted, evicted miss answered by the lookup; a signed cache hits its own
 * entries; the key never shows in a log, an error or a metric.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import * as crypto from "node:crypto"
import * as util from "node:util"
import { CacheAside, CacheStore, Codec, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

const user = (id: number) => new User({ id, name: `user ${id}` })

const secret = "integrity-test-key-0123456789abcdef"
const otherSecret = "another-signing-key-fedcba9876543210"

const Env = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

const make = (
  namespace: string,
  source: DataSource.Memory<number, User>,
  keys: {
    readonly signingKey?: Redacted.Redacted<string | Uint8Array>
    readonly previousSigningKeys?: ReadonlyArray<Redacted.Redacted<string | Uint8Array>>
  } = { signingKey: Redacted.make(secret) }
) =>
  CacheAside.make({
    namespace,
    key: (id: number) => String(id),
    schema: User,
    lookup: source,
    ttl: "10 minutes",
    jitter: 0,
    decodeCacheSize: 0,
    ...keys
  })

const snapshot = (namespace: string) => Effect.flatMap(Metrics.Metrics, (m) => m.snapshot(namespace))

const stored = (full: string) => Effect.flatMap(CacheStore.CacheStore, (store) => store.get(full)).pipe(Effect.orDie)

const plant = (full: string, bytes: Uint8Array) =>
  Effect.flatMap(CacheStore.CacheStore, (store) => store.set(full, bytes, Duration.minutes(10))).pipe(Effect.orDie)

/** A well-formed entry in the codec's format, as an attacker with write access would write it. */
const wellFormed = (value: User) =>
  Effect.map(
    Clock.currentTimeMillis,
    (now) => Either.getOrThrow(Codec.make(User).encode({ _tag: "Value", value, expiresAt: now + 600_000, delta: 0 }))
  )

/** The signed layout (magic, HMAC-SHA256 over the length-prefixed key and the payload), with any key. */
const signWith = (key: string, full: string, payload: Uint8Array): Uint8Array => {
  const name = Buffer.from(full, "utf8")
  const length = Buffer.alloc(4)
  length.writeUInt32BE(name.length)
  const mac = crypto.createHmac("sha256", key).update(length).update(name).update(payload).digest()
  return Buffer.concat([Buffer.from([1, 1]), mac, payload])
}

const isSigned = (bytes: Uint8Array) => bytes[0] === 1 && bytes[1] === 1

describe("entry integrity (signingKey)", () => {
  it.effect("a signed cache writes signed entries and hits them", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)]])
      const users = yield* make("own", source)
      assertSome(yield* users.get(1), user(1))
      for (let i = 0; i < 5; i++) assertSome(yield* users.get(1), user(1))
      assertNone(yield* users.get(2))
      assertNone(yield* users.get(2))
      const bytes = yield* stored(users.keyOf(1))
      assertTrue(Option.isSome(bytes) && isSigned(bytes.value))
      assert.strictEqual(yield* source.loads, 2)
      const s = yield* snapshot("own")
      assert.strictEqual(s.hits, 6)
      assert.strictEqual(s.integrityErrors, 0)
      assert.strictEqual(s.decodeErrors, 0)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("a forged well-formed entry (unsigned, or signed with another key) is a counted, evicted miss", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)], [2, user(2)], [3, user(3)]])
      const users = yield* make("forged", source)
      const forged = new User({ id: 1, name: "mallory" })
      const unsigned = yield* wellFormed(forged)
      const planted = [
        unsigned,
        signWith(otherSecret, users.keyOf(2), unsigned),
        Buffer.concat([Buffer.from([1, 1]), crypto.randomBytes(32), unsigned])
      ]
      for (const [i, bytes] of planted.entries()) yield* plant(users.keyOf(i + 1), bytes)
      for (const id of [1, 2, 3]) assertSome(yield* users.get(id), user(id))
      assert.strictEqual(yield* source.loads, 3)
      for (const [i, bytes] of planted.entries()) {
        const now = yield* stored(users.keyOf(i + 1))
        assertTrue(Option.isSome(now) && isSigned(now.value) && !Buffer.from(now.value).equals(bytes))
      }
      // taken over: the next gets are hits of the lookup's values
      for (const id of [1, 2, 3]) assertSome(yield* users.get(id), user(id))
      assert.strictEqual(yield* source.loads, 3)
      const s = yield* snapshot("forged")
      assert.strictEqual(s.integrityErrors, 3)
      assert.strictEqual(s.decodeErrors, 0)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("every single-bit flip, truncation or extension of a signed entry is a miss answered by the lookup", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)]])
      const users = yield* make("flips", source)
      assertSome(yield* users.get(1), user(1))
      const good = yield* stored(users.keyOf(1))
      assertTrue(Option.isSome(good))
      const original = Buffer.from(good.value)
      const variants: Array<Buffer> = []
      for (let i = 0; i < original.length; i++) {
        const flipped = Buffer.from(original)
        flipped[i] = flipped[i]! ^ (1 << (i % 8))
        variants.push(flipped)
      }
      variants.push(
        original.subarray(0, original.length - 1),
        original.subarray(0, 34),
        Buffer.concat([original, Buffer.from(" ")])
      )
      for (const bytes of variants) {
        yield* plant(users.keyOf(1), bytes)
        assertSome(yield* users.get(1), user(1))
      }
      assert.strictEqual(yield* source.loads, 1 + variants.length)
      const s = yield* snapshot("flips")
      // a flip of the first byte to NUL reads as an unknown binary header (a decode error)
      assert.strictEqual(s.integrityErrors + s.decodeErrors, variants.length)
      assert.isAtLeast(s.integrityErrors, variants.length - 1)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("an entry copied from another key, or from another cache, does not verify", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)], [2, user(2)]])
      const users = yield* make("copied", source)
      const others = yield* make("copied2", source)
      assertSome(yield* users.get(2), user(2))
      assertSome(yield* others.get(1), user(2 - 1))
      const entryOf2 = yield* stored(users.keyOf(2))
      const otherCache = yield* stored(others.keyOf(1))
      assertTrue(Option.isSome(entryOf2) && Option.isSome(otherCache))
      yield* plant(users.keyOf(1), entryOf2.value)
      assertSome(yield* users.get(1), user(1))
      // the same id in another namespace, signed with the same key: bound to its own full key
      yield* plant(users.keyOf(1), otherCache.value)
      yield* users.invalidate(2)
      yield* plant(users.keyOf(2), otherCache.value)
      assertSome(yield* users.get(2), user(2))
      assert.strictEqual((yield* snapshot("copied")).integrityErrors, 2)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("getMany answers the lookup for forged keys and the cache for good ones", () =>
    Effect.gen(function*() {
      const ids = [1, 2, 3, 4]
      const source = yield* DataSource.memory<number, User>(ids.map((id) => [id, user(id)] as const))
      const users = yield* make("many", source)
      yield* users.getMany(ids)
      for (const id of [2, 4]) yield* plant(users.keyOf(id), yield* wellFormed(new User({ id, name: "forged" })))
      deepStrictEqual(yield* users.getMany(ids), ids.map((id) => Option.some(user(id))))
      assert.strictEqual(yield* source.loads, 6)
      assert.strictEqual((yield* snapshot("many")).integrityErrors, 2)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("key rotation: previous keys verify, only the current key signs", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)], [2, user(2)]])
      const old = yield* make("rotate", source, { signingKey: Redacted.make(secret) })
      assertSome(yield* old.get(1), user(1))
      const rotated = yield* make("rotate", source, {
        signingKey: Redacted.make(otherSecret),
        previousSigningKeys: [Redacted.make(secret)]
      })
      assertSome(yield* rotated.get(1), user(1)) // the old key's entry: a hit
      assert.strictEqual(yield* source.loads, 1)
      assertSome(yield* rotated.get(2), user(2)) // written with the new key
      const fresh = yield* stored(rotated.keyOf(2))
      assertTrue(Option.isSome(fresh))
      deepStrictEqual(
        Buffer.from(fresh.value),
        Buffer.from(signWith(otherSecret, rotated.keyOf(2), Buffer.from(fresh.value).subarray(34)))
      )
      // a cache with only the new key no longer reads the old key's entry
      const only = yield* make("rotate", source, { signingKey: Redacted.make(otherSecret) })
      assertSome(yield* only.get(1), user(1))
      assert.strictEqual(yield* source.loads, 3)
      assert.strictEqual((yield* snapshot("rotate")).integrityErrors, 1)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("an unsigned cache's entries are misses for a signed cache (turning signing on)", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)]])
      const plain = yield* make("turnOn", source, {})
      assertSome(yield* plain.get(1), user(1))
      const signed = yield* make("turnOn", source)
      assertSome(yield* signed.get(1), user(1))
      assertSome(yield* signed.get(1), user(1))
      assert.strictEqual(yield* source.loads, 2)
      assert.strictEqual((yield* snapshot("turnOn")).integrityErrors, 1)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("leases stay unsigned: a planted lease costs a load, never an integrity error or a wrong answer", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([[1, user(1)]])
      const users = yield* CacheAside.make({
        namespace: "lease",
        key: (id: number) => String(id),
        schema: User,
        lookup: source,
        ttl: "10 minutes",
        lock: false,
        signingKey: Redacted.make(new Uint8Array(32).fill(7))
      })
      yield* plant(users.keyOf(1), Codec.lease("planted"))
      assertSome(yield* users.get(1), user(1))
      assert.strictEqual(yield* source.loads, 1)
      const bytes = yield* stored(users.keyOf(1))
      assertTrue(Option.isSome(bytes) && isSigned(bytes.value)) // filled over the lease it saw
      assertSome(yield* users.get(1), user(1))
      assert.strictEqual(yield* source.loads, 1)
      const s = yield* snapshot("lease")
      assert.strictEqual(s.integrityErrors, 0)
      assert.strictEqual(s.decodeErrors, 0)
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("invalid signing keys are InvalidOptions that never hold the key", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([])
      const short = "short-secret"
      const cases: ReadonlyArray<readonly [string, Parameters<typeof make>[2]]> = [
        [short, { signingKey: Redacted.make(short) }],
        [short, { signingKey: Redacted.make(secret), previousSigningKeys: [Redacted.make(short)] }],
        [secret, { signingKey: secret as unknown as Redacted.Redacted<string> }],
        [secret, { previousSigningKeys: [Redacted.make(secret)] }],
        ["1234", { signingKey: Redacted.make(1234 as unknown as string) }],
        ["\u0007", { signingKey: Redacted.make(new Uint8Array(15).fill(7)) }]
      ]
      for (const [key, keys] of cases) {
        const exit = yield* Effect.exit(make("invalid", source, keys))
        assertTrue(Exit.isFailure(exit))
        const printed = [util.inspect(exit, { depth: 20 }), JSON.stringify(exit), String(exit)].join("\n")
        assertTrue(printed.includes("InvalidOptions"))
        assertTrue(!printed.includes(key))
      }
    }).pipe(Effect.scoped, Effect.provide(Env)))

  it.effect("the signing key never shows in logs, metrics, the handle or printed options", () =>
    Effect.gen(function*() {
      const lines: Array<string> = []
      const capture = Logger.make((options) => {
        lines.push(util.inspect(options, { depth: 20 }))
      })
      const source = yield* DataSource.memory<number, User>([[1, user(1)], [2, user(2)]])
      const options = { signingKey: Redacted.make(secret) }
      const program = Effect.gen(function*() {
        const users = yield* make("leak", source, options)
        yield* users.getMany([1, 2])
        yield* plant(users.keyOf(1), yield* wellFormed(new User({ id: 1, name: "forged" })))
        yield* plant(users.keyOf(2), Buffer.from("garbage"))
        yield* users.get(1)
        yield* users.getMany([1, 2])
        return users
      })
      const users = yield* program.pipe(
        Effect.provide(Logger.add(capture)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
      const s = yield* snapshot("leak")
      assert.strictEqual(s.integrityErrors, 2)
      assert.isAtLeast(lines.length, 2) // the takeovers were logged
      const printed = [
        ...lines,
        JSON.stringify(s),
        util.inspect(users, { depth: 20 }),
        util.inspect(options, { depth: 20 }),
        JSON.stringify(options)
      ].join("\n")
      assertTrue(printed.includes("Integrity"))
      assertTrue(!printed.includes(secret))
    }).pipe(Effect.scoped, Effect.provide(Env)))
})
