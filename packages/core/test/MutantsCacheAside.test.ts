/**
 * Survivors of the read path's decision table (internal/cacheAside.ts, internal/refresh.ts), through
 * `CacheAside.make` on the memory store: the XFetch condition with a fixed random value, the lock
 * waiter's deadline, which local flights an invalidation or a write marks, and `set` of a value
 * with no TTL or one the schema cannot encode (see docs/mutation.md).
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheStore, Codec, FaultInjection, MemoryCacheStore, Metrics } from "../src/index.js"

const Memory = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)
const Faulty = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

const base = {
  namespace: "mutants",
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

/** Yields until `check` holds (a bounded number of times: never a wall-clock assertion). */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (check()) return
      yield* Effect.yieldNow()
    }
    assert.fail("the condition never held")
  })

/** An entry of `value` expiring `inMillis` from now, whose lookup took `delta` ms. */
const plantEntry = (full: string, value: string, inMillis: number, delta: number) =>
  Effect.gen(function*() {
    const store = yield* CacheStore.CacheStore
    const now = yield* Clock.currentTimeMillis
    const bytes = Either.getOrThrow(
      Codec.make(Schema.String).encode({ _tag: "Value", value, expiresAt: now + inMillis, delta })
    )
    yield* store.set(full, bytes, Duration.millis(inMillis + 60_000))
  })

const counted = (beta: number) =>
  Effect.gen(function*() {
    const loads = { count: 0 }
    const cache = yield* CacheAside.make({
      ...base,
      earlyExpiration: { beta },
      lookup: (id: number) => Effect.sync(() => (loads.count++, Option.some(`fresh${id}`)))
    })
    const metrics = yield* Metrics.Metrics
    return { cache, loads, stats: () => metrics.snapshot("mutants") }
  })

describe("XFetch: refresh early when now - delta * beta * ln(r) >= expiry", () => {
  // delta 1000 ms, expiry in 4000 ms: refresh exactly when -1000 * beta * ln(r) >= 4000
  const cases: ReadonlyArray<readonly [string, number, number, boolean]> = [
    ["far from expiry (r 0.5): no refresh", 1, 0.5, false],
    ["just short of it (ln r = -3.9): no refresh", 1, Math.exp(-3.9), false],
    ["exactly at it (ln r = -4): refresh", 1, Math.exp(-4), true],
    ["past it (ln r = -6): refresh", 1, Math.exp(-6), true],
    ["beta 2 doubles the window (ln r = -2.5): refresh", 2, Math.exp(-2.5), true],
    ["beta 0.5 halves it (ln r = -6): no refresh", 0.5, Math.exp(-6), false]
  ]
  for (const [name, beta, r, refreshes] of cases) {
    it.scoped(name, () =>
      Effect.gen(function*() {
        assert.strictEqual(-1000 * Math.log(Math.exp(-4)), 4000) // the boundary case is exact
        const { cache, loads, stats } = yield* counted(beta)
        yield* plantEntry(cache.keyOf(1), "old", 4000, 1000)
        assertSome(yield* Effect.withRandom(cache.get(1), Random.fixed([r])), "old")
        assert.strictEqual((yield* stats()).earlyRefreshes, refreshes ? 1 : 0)
        if (refreshes) {
          yield* until(() => loads.count === 1)
          for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
          assertSome(yield* Effect.withRandom(cache.get(1), Random.fixed([0.99])), "fresh1")
        } else {
          for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
          assert.strictEqual(loads.count, 0)
        }
      }).pipe(Effect.provide(Memory)))
  }

  it.scoped("an entry whose lookup took no time (delta 0) is never refreshed early", () =>
    Effect.gen(function*() {
      const { cache, loads, stats } = yield* counted(1)
      yield* plantEntry(cache.keyOf(1), "old", 1, 0)
      assertSome(yield* Effect.withRandom(cache.get(1), Random.fixed([1e-300])), "old")
      assert.strictEqual((yield* stats()).earlyRefreshes, 0)
      assert.strictEqual(loads.count, 0)
    }).pipe(Effect.provide(Memory)))
})

describe("the lock waiter's deadline", () => {
  it.scoped("a waiter on a lease nobody fills loads by itself once lock.wait has passed, and fills under that lease", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const metrics = yield* Metrics.Metrics
      let loads = 0
      const cache = yield* CacheAside.make({
        ...base,
        lookup: (id: number) => Effect.sync(() => (loads++, Option.some(`v${id}`))),
        lock: { wait: "100 millis", poll: "30 millis" }
      })
      yield* store.set(cache.keyOf(1), Codec.lease("a holder that never fills"), Duration.minutes(1))
      const waiter = yield* Effect.fork(cache.get(1))
      for (let step = 0; step < 3; step++) {
        yield* TestClock.adjust("30 millis")
        assert.isNull(waiter.unsafePoll()) // 30, 60, 90 ms: still waiting
      }
      assert.strictEqual(loads, 0)
      yield* TestClock.adjust("10 millis") // exactly at the deadline
      yield* until(() => waiter.unsafePoll() !== null)
      assertSome(yield* Fiber.join(waiter), "v1")
      assert.strictEqual(loads, 1)
      const stats = yield* metrics.snapshot("mutants")
      assert.strictEqual(stats.lockWaits, 1)
      assert.strictEqual(stats.lockTimeouts, 1)
      assertSome(yield* cache.get(1), "v1") // filled over the abandoned lease
      assert.strictEqual(loads, 1)
    }).pipe(Effect.provide(Memory)))
})

describe("which local flights an invalidation marks", () => {
  /**
   * Flights of keys 1 and 2 in the air, then `invalidate`: answers the fills attempted by the two
   * flights (a marked flight skips its fill: the invalidation wins even where the lease would not
   * tell) and each key's loads after one more get.
   */
  const inFlight = (
    invalidate: (cache: CacheAside.CacheAside<number, string, never>) => Effect.Effect<unknown, unknown>
  ) =>
    Effect.gen(function*() {
      const faults = yield* FaultInjection.FaultInjection
      const gates = new Map<number, Deferred.Deferred<void>>()
      const loads = new Map<number, number>()
      const cache = yield* CacheAside.make({
        ...base,
        key: (id: number) => `user:${id}`,
        lookup: (id: number) =>
          Effect.gen(function*() {
            loads.set(id, (loads.get(id) ?? 0) + 1)
            const gate = gates.get(id)
            if (gate !== undefined) yield* Deferred.await(gate)
            return Option.some(`v${id}`)
          })
      })
      for (const id of [1, 2]) gates.set(id, yield* Deferred.make<void>())
      const one = yield* Effect.fork(cache.get(1))
      const two = yield* Effect.fork(cache.get(2))
      yield* until(() => loads.get(1) === 1 && loads.get(2) === 1)
      yield* Effect.orDie(invalidate(cache) as Effect.Effect<unknown, never>)
      yield* faults.resetCounts
      for (const gate of gates.values()) yield* Deferred.succeed(gate, undefined)
      assertSome(yield* Fiber.join(one), "v1")
      assertSome(yield* Fiber.join(two), "v2")
      const fills = (yield* faults.counts).compareAndSet
      gates.clear()
      const after = [yield* cache.get(1), yield* cache.get(2)]
      return { fills, loads: [loads.get(1), loads.get(2)], after }
    }).pipe(Effect.provide(Faulty))

  it.scoped("invalidate(1) marks the flight of 1, not the flight of 2", () =>
    Effect.map(inFlight((cache) => cache.invalidate(1)), ({ after, fills, loads }) => {
      assert.strictEqual(fills, 1)
      assert.sameOrderedMembers(loads, [2, 1])
      deepStrictEqual(after, [Option.some("v1"), Option.some("v2")])
    }))

  it.scoped("invalidatePattern over key 1 marks only its flight", () =>
    Effect.map(inFlight((cache) => cache.invalidatePattern("user:1")), ({ fills, loads }) => {
      assert.strictEqual(fills, 1)
      assert.sameOrderedMembers(loads, [2, 1])
    }))

  it.scoped("set(1, ...) marks the flight of 1 only: the written value stays", () =>
    Effect.map(inFlight((cache) => cache.set(1, "written")), ({ after, fills, loads }) => {
      assert.strictEqual(fills, 1)
      assert.sameOrderedMembers(loads, [1, 1])
      deepStrictEqual(after, [Option.some("written"), Option.some("v2")])
    }))

  it.scoped("invalidateAll marks every flight", () =>
    Effect.map(inFlight((cache) => cache.invalidateAll), ({ fills, loads }) => {
      assert.strictEqual(fills, 0)
      assert.sameOrderedMembers(loads, [2, 2])
    }))
})

describe("set", () => {
  it.scoped("a value whose TTL is none deletes the entry instead of writing it", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const cache = yield* CacheAside.make({
        ...base,
        ttl: (value: string) => value === "volatile" ? "0 millis" : "1 minute",
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`))
      })
      yield* cache.set(1, "kept")
      assertSome(yield* cache.getOption(1).pipe(Effect.map(Option.flatten)), "kept")
      yield* cache.set(1, "volatile")
      assertNone(yield* store.get(cache.keyOf(1)))
    }).pipe(Effect.provide(Memory)))

  it.scoped("a value the schema cannot encode fails and leaves the entry as it was", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const cache = yield* CacheAside.make({
        ...base,
        schema: Schema.NonEmptyString,
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`))
      })
      yield* cache.set(1, "kept")
      const hex = Effect.map(store.get(cache.keyOf(1)), Option.map((bytes) => Buffer.from(bytes).toString("hex")))
      const before = yield* hex
      assertTrue(Option.isSome(before))
      const exit = yield* Effect.exit(cache.set(1, ""))
      assertTrue(Exit.isFailure(exit))
      const error = Exit.isFailure(exit) ? exit.cause : undefined
      assert.include(String(error), "CodecError")
      deepStrictEqual(yield* hex, before)
    }).pipe(Effect.provide(Memory)))

  it.scoped("a value the schema encodes but cannot read back (NaN becomes null) fails and is not written", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const cache = yield* CacheAside.make({
        ...base,
        schema: Schema.Number,
        lookup: (id: number) => Effect.succeed(Option.some(id))
      })
      assertTrue(Exit.isFailure(yield* Effect.exit(cache.set(1, Number.NaN))))
      assertNone(yield* store.get(cache.keyOf(1)))
    }).pipe(Effect.provide(Memory)))
})

describe("getOption", () => {
  it.scoped("answers a fresh entry, and none for an entry only kept for fail-safe", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({
        ...base,
        failSafe: { maxStale: "1 minute" },
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`))
      })
      assertSome(yield* cache.get(1), "v1")
      assertSome(yield* cache.getOption(1), Option.some("v1"))
      yield* TestClock.adjust("61 seconds")
      assertNone(yield* cache.getOption(1))
    }).pipe(Effect.provide(Memory)))
})
