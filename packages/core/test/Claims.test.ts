/**
 * The README's claims about the read path and the resilient store that the rest of the suite did
 * not check, each written so that the bug it names fails it. Everything runs in process on the
 * memory store with `TestClock`, so the core package's mutation run sees these tests too.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import {
  CacheAside,
  CacheStore,
  DataSource,
  FaultInjection,
  MemoryCacheStore,
  Metrics,
  ResilientCacheStore
} from "../src/index.js"

const services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

/** Lets forked background work (a refresh, a probe) take its turns without moving any clock. */
const backgroundTurns = Effect.repeatN(Effect.yieldNow(), 20)

const rows = (n: number) => Array.from({ length: n }, (_, i) => [i, `v${i}`] as const)

const stringCache = <E, R>(
  lookup: DataSource.DataSource<number, string, E, R> | ((id: number) => Effect.Effect<Option.Option<string>, E, R>),
  extra: Partial<CacheAside.Options<number, string, string, E, R>> = {}
) =>
  CacheAside.make({
    namespace: "claims",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup,
    ttl: "1 minute",
    jitter: 0,
    ...extra
  })

/** A lookup over a mutable row map whose first call blocks until released. */
const gatedLookup = (data: Map<number, string>) =>
  Effect.gen(function*() {
    const started = yield* Deferred.make<void>()
    const release = yield* Deferred.make<void>()
    let calls = 0
    const lookup = (id: number) =>
      Effect.gen(function*() {
        calls++
        const row = Option.fromNullable(data.get(id))
        if (calls === 1) {
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(release)
        }
        return row
      })
    return { lookup, started, release, calls: () => calls }
  })

describe("TTL jitter", () => {
  it.scoped("jitter only shortens a TTL, by at most its fraction, and it does spread expiries", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 100 }, (_, i) => i)
      const source = yield* DataSource.memory<number, string>(rows(100))
      const cache = yield* stringCache(source, { ttl: "10 seconds", jitter: 0.5 })
      yield* cache.getMany(keys)
      assert.strictEqual(yield* source.loads, 100)
      // every TTL is in [5 s, 10 s]: nothing expires before 10 s × (1 − 0.5)
      yield* TestClock.adjust("4999 millis")
      yield* cache.getMany(keys)
      assert.strictEqual(yield* source.loads, 100, "an entry expired before ttl × (1 − jitter)")
      // at 7.5 s some entries have expired and some have not: the TTLs are spread
      yield* TestClock.adjust("2501 millis")
      yield* cache.getMany(keys)
      const reloadedMidway = (yield* source.loads) - 100
      assert.isAbove(reloadedMidway, 0, "no entry expired before the TTL: jitter is not applied")
      assert.isBelow(reloadedMidway, 100, "every entry expired at ttl × 0.75")
      // at 10 s every entry loaded at 0 has expired: jitter never lengthens a TTL (the ones
      // reloaded at 7.5 s live at least until 12.5 s)
      yield* TestClock.adjust("2500 millis")
      yield* cache.getMany(keys)
      assert.strictEqual(yield* source.loads, 200, "an entry outlived its TTL")
    }).pipe(Effect.provide(services)))

  it.scoped("the default jitter (0.1) keeps a TTL within [0.9 × ttl, ttl]", () =>
    Effect.gen(function*() {
      const keys = Array.from({ length: 50 }, (_, i) => i)
      const source = yield* DataSource.memory<number, string>(rows(50))
      const cache = yield* stringCache(source, { ttl: "10 seconds", jitter: undefined })
      yield* cache.getMany(keys)
      yield* TestClock.adjust("8999 millis")
      yield* cache.getMany(keys)
      assert.strictEqual(yield* source.loads, 50, "an entry expired before 0.9 × ttl")
      yield* TestClock.adjust("1001 millis")
      yield* cache.getMany(keys)
      assert.strictEqual(yield* source.loads, 100, "an entry outlived its TTL")
    }).pipe(Effect.provide(services)))
})

describe("null caching", () => {
  it.scoped("the default negativeTtl is the TTL, capped at one minute", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, string>([])
      const long = yield* stringCache(source, { namespace: "long", ttl: "1 hour" })
      const short = yield* stringCache(source, { namespace: "short", ttl: "10 seconds" })
      assert.isTrue(Option.isNone(yield* long.get(404)))
      assert.isTrue(Option.isNone(yield* short.get(404)))
      assert.strictEqual(yield* source.loads, 2)
      // a TTL under a minute: "not found" is kept for the TTL
      yield* TestClock.adjust("9999 millis")
      yield* short.get(404)
      assert.strictEqual(yield* source.loads, 2)
      yield* TestClock.adjust("1 millis")
      yield* short.get(404)
      assert.strictEqual(yield* source.loads, 3, "not found outlived the (shorter) TTL")
      // a TTL of an hour: "not found" is kept for one minute, not an hour
      yield* TestClock.adjust("49999 millis")
      yield* long.get(404)
      assert.strictEqual(yield* source.loads, 3, "not found expired before one minute")
      yield* TestClock.adjust("1 millis")
      yield* long.get(404)
      assert.strictEqual(yield* source.loads, 4, "not found was kept past one minute")
    }).pipe(Effect.provide(services)))
})

describe("invalidatePattern", () => {
  it.scoped("glob characters in the prefix, namespace and version are escaped: other caches' keys survive", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, string>(rows(3))
      // unescaped, `p?:n*:v[12]:*` would match every key of the second cache
      const globby = yield* stringCache(source, { prefix: "p?", namespace: "n*", version: "v[12]" })
      const other = yield* stringCache(source, { prefix: "pX", namespace: "nY", version: "v1" })
      yield* globby.getMany([0, 1, 2])
      yield* other.getMany([0, 1, 2])
      assert.strictEqual(yield* source.loads, 6)
      assert.strictEqual(yield* globby.invalidatePattern("*"), 3)
      const store = yield* CacheStore.CacheStore
      for (const id of [0, 1, 2]) {
        assert.isTrue(Option.isSome(yield* store.get(other.keyOf(id))), `the other cache lost ${other.keyOf(id)}`)
        assert.isTrue(Option.isNone(yield* store.get(globby.keyOf(id))), `${globby.keyOf(id)} survived`)
      }
      yield* other.getMany([0, 1, 2])
      assert.strictEqual(yield* source.loads, 6)
    }).pipe(Effect.provide(services)))
})

describe("flights and invalidation", () => {
  it.scoped("a get after an invalidation does not join the invalidated flight: it loads the new row", () =>
    Effect.gen(function*() {
      const data = new Map([[1, "old"]])
      const gate = yield* gatedLookup(data)
      const cache = yield* stringCache(gate.lookup)
      const first = yield* Effect.fork(cache.get(1))
      yield* Deferred.await(gate.started) // the first get has read the old row
      data.set(1, "new")
      yield* cache.invalidate(1)
      const second = yield* Effect.fork(cache.get(1))
      yield* Deferred.succeed(gate.release, undefined)
      assertSome(yield* Fiber.join(first), "old")
      assertSome(yield* Fiber.join(second), "new")
      assert.strictEqual(gate.calls(), 2, "the second get joined the invalidated flight")
      assertSome(yield* cache.get(1), "new")
      assert.strictEqual(gate.calls(), 2)
    }).pipe(Effect.provide(services)))

  it.scoped("an invalidated flight's result is not cached, even when the store's delete failed", () =>
    Effect.gen(function*() {
      const data = new Map([[1, "old"]])
      const gate = yield* gatedLookup(data)
      const cache = yield* stringCache(gate.lookup)
      const faults = yield* FaultInjection.FaultInjection
      const first = yield* Effect.fork(cache.get(1))
      yield* Deferred.await(gate.started)
      data.set(1, "new")
      // the delete never reaches the store: the lease the flight fills under is still there
      yield* faults.failNext(1, { operations: ["delete"] })
      const invalidated = yield* Effect.either(cache.invalidate(1))
      assert.isTrue(Either.isLeft(invalidated), "the injected delete failure reached the caller")
      yield* Deferred.succeed(gate.release, undefined)
      assertSome(yield* Fiber.join(first), "old")
      assertSome(yield* cache.get(1), "new")
      assert.strictEqual(gate.calls(), 2, "the invalidated flight's old row was cached")
    }).pipe(Effect.provide(Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer))))
})

describe("XFetch", () => {
  it.scoped("an early refresh replaces the value: a later get answers the new row", () =>
    Effect.gen(function*() {
      const data = new Map([[1, "v1"]])
      let loads = 0
      const cache = yield* stringCache(
        (id) =>
          Effect.gen(function*() {
            loads++
            yield* Effect.sleep("50 millis") // the lookup takes 50 ms: XFetch's delta
            return Option.fromNullable(data.get(id))
          }),
        // a huge beta: every hit refreshes early (−ln(random) > 0), so the test does not depend on chance
        { ttl: "10 seconds", earlyExpiration: { beta: 1e9 } }
      )
      const loaded = yield* Effect.fork(cache.get(1))
      yield* TestClock.adjust("50 millis")
      assertSome(yield* Fiber.join(loaded), "v1")
      data.set(1, "v2")
      assertSome(yield* cache.get(1), "v1") // a hit, served at once; the refresh runs in the background
      yield* backgroundTurns
      assert.strictEqual(loads, 2, "no early refresh started")
      yield* TestClock.adjust("50 millis") // the refresh's lookup completes
      yield* backgroundTurns
      const metrics = yield* Metrics.Metrics
      assert.isAtLeast((yield* metrics.snapshot("claims")).earlyRefreshes, 1)
      // with beta this large the next hit refreshes again; its answer is what the refresh stored
      assertSome(yield* cache.get(1), "v2")
    }).pipe(Effect.provide(services)))
})

describe("circuit breaker cooldown", () => {
  /** A resilient store over a memory store that fails on demand; opens on the first failure. */
  const breakerStore = Effect.gen(function*() {
    const { control, store: faulty } = yield* FaultInjection.make(yield* MemoryCacheStore.make())
    const store = yield* ResilientCacheStore.make(faulty, {
      failureThreshold: 1,
      cooldown: "1 second",
      cooldownJitter: 0.5,
      readRetry: false,
      writeRetry: false,
      invalidationRetry: false
    })
    return { control, store }
  })

  it.scoped("jitter only shortens the cooldown, by at most its fraction (20 breakers opened together)", () =>
    Effect.gen(function*() {
      const breakers = yield* Effect.forEach(Array.from({ length: 20 }), () => breakerStore)
      for (const { control, store } of breakers) {
        yield* control.failAll()
        assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k"))))
        yield* control.heal
        yield* control.resetCounts
      }
      // before cooldown × (1 − jitter): refused without a probe
      yield* TestClock.adjust("499 millis")
      for (const { control, store } of breakers) {
        const refused = yield* Effect.either(store.get("k"))
        assert.isTrue(
          Either.isLeft(refused) && refused.left.cause instanceof ResilientCacheStore.CircuitOpen,
          "the breaker let a call through before cooldown × (1 − jitter)"
        )
        yield* backgroundTurns
        assert.strictEqual((yield* control.counts).total, 0, "a probe ran before cooldown × (1 − jitter)")
      }
      // at the full cooldown every breaker probes (jitter never lengthens it), and closes
      yield* TestClock.adjust("501 millis")
      for (const { control, store } of breakers) {
        yield* Effect.either(store.get("k")) // refused at once, starts the probe in the background
        yield* backgroundTurns
        assert.strictEqual((yield* control.counts).get, 1, "no probe at the full cooldown")
        deepStrictEqual(yield* store.get("k"), Option.none(), "the breaker did not close after the probe")
      }
    }).pipe(Effect.provide(Metrics.layer)))
})
