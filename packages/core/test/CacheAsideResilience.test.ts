import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, DataSource, FaultInjection, MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"
import { implOf } from "../src/internal/cacheAside.js"

/** Lets the breaker's background probe run (it is forked; a few scheduler turns). */
const probeRuns = Effect.repeatN(Effect.yieldNow(), 20)

/** The application's store as in production, over a memory store that fails on demand. */
const TestStore = (options: ResilientCacheStore.Options = {}) =>
  ResilientCacheStore.layer(FaultInjection.layer(MemoryCacheStore.layer()), options).pipe(
    Layer.provideMerge(Metrics.layer)
  )

const setup = Effect.gen(function*() {
  const db = yield* DataSource.memory<number, string>(Array.from({ length: 20 }, (_, i) => [i, `v${i}`] as const))
  const users = yield* CacheAside.make({
    namespace: "user",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup: db,
    ttl: "1 hour"
  })
  const faults = yield* FaultInjection.FaultInjection
  const metrics = yield* Metrics.Metrics
  return { db, users, faults, metrics }
})

/**
 * Runs an effect to its end, moving the clock on in small steps (timeouts, retry backoffs and
 * replays wait on it), and checks that it never takes longer than two operation timeouts (a read
 * may wait one timeout for queued invalidations, then one for its own call) plus retry backoff.
 */
const settle = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    for (let waited = 0; waited <= 600; waited += 50) {
      const exit = yield* Fiber.poll(fiber)
      if (Option.isSome(exit)) return yield* exit.value
      yield* TestClock.adjust("50 millis")
    }
    return assert.fail("a cache call took longer than 600 millis")
  })

describe("CacheAside over a resilient store", () => {
  it.scoped("with the store failing every get succeeds from the lookup, and the breaker keeps calls off the store", () =>
    Effect.gen(function*() {
      const { db, faults, metrics, users } = yield* setup
      yield* faults.failAll()
      const results = yield* Effect.forEach(
        Array.from({ length: 200 }, (_, i) => i % 20),
        (id) => Effect.either(users.get(id))
      )
      assert.strictEqual(results.filter((r) => r._tag === "Left").length, 0, "no get failed")
      assert.isTrue(results.every((r, i) => r._tag === "Right" && Option.getOrUndefined(r.right) === `v${i % 20}`))
      assert.strictEqual(yield* db.loads, 200)
      // a lease-read that failed without an answer may have written its lease: each one is released
      // in the background (a compare-and-delete, failing too), until the breaker opens
      yield* FiberSet.awaitEmpty(implOf(users)!.fibers)
      const counts = yield* faults.counts
      assert.strictEqual(counts.total, 5, "after 5 failures the store is not called any more")
      assert.strictEqual(counts.get + counts.getOrLease + counts.compareAndDelete, 5)
      const s = yield* metrics.snapshot("user")
      assert.strictEqual(s.fallbacks, 200)
      assert.strictEqual(s.store.breaker, "open")
      // every get the store saw released its lease (sent, or refused by the breaker); the others were refused
      assert.strictEqual(s.store.rejected, 200 - counts.compareAndDelete)

      // concurrent gets, too
      const concurrent = yield* Effect.forEach(
        Array.from({ length: 100 }, (_, i) => i % 20),
        (id) => Effect.either(users.get(id)),
        { concurrency: "unbounded" }
      )
      assert.strictEqual(concurrent.filter((r) => r._tag === "Left").length, 0)

      // the store comes back: after the cooldown a get starts the probe (and is answered by the
      // lookup at once), the probe closes the breaker, and hits resume
      yield* faults.heal
      yield* TestClock.adjust("1 second")
      assertSome(yield* users.get(1), "v1")
      yield* probeRuns
      assert.strictEqual((yield* metrics.snapshot()).store.breaker, "closed")
      assertSome(yield* users.get(1), "v1") // a miss: loaded and cached
      const loads = yield* db.loads
      assertSome(yield* users.get(1), "v1")
      assert.strictEqual(yield* db.loads, loads, "a hit")
      assert.strictEqual((yield* metrics.snapshot("user")).hits, 1)
    }).pipe(Effect.provide(TestStore({ cooldownJitter: 0 }))))

  it.scoped("an invalidation made during the outage is applied before the first read after it", () =>
    Effect.gen(function*() {
      const { db, faults, metrics, users } = yield* setup
      assertSome(yield* users.get(1), "v1")
      assertSome(yield* users.get(2), "v2")
      yield* faults.failAll()
      yield* db.write(1, "new1")
      yield* db.write(2, "new2")
      // the write path never fails because of the cache
      const invalidate = yield* Effect.fork(Effect.all([users.invalidate(1), users.invalidatePattern("2")]))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(invalidate)
      yield* faults.heal
      // (a replay may be in flight, waiting on the clock: run the reads to their end)
      assertSome(yield* settle(users.get(1)), "new1")
      assertSome(yield* settle(users.get(2)), "new2")
      // the queue drained, and the cache serves the new values
      yield* TestClock.adjust("2 seconds")
      const s = yield* metrics.snapshot()
      assert.strictEqual(s.store.queueSize, 0)
      assert.strictEqual(s.store.invalidationsReplayed, 2)
      const loads = yield* db.loads
      assertSome(yield* users.get(1), "new1")
      assertSome(yield* users.get(2), "new2")
      assert.strictEqual(yield* db.loads, loads, "hits")
    }).pipe(Effect.provide(TestStore({ failureThreshold: 100 }))))

  it.scoped("writes dropped by a failing store are counted, reads keep working", () =>
    Effect.gen(function*() {
      const { faults, metrics, users } = yield* setup
      // cache fills fail (the lease a miss takes still works), reads answer
      yield* faults.failAll({ operations: ["set", "compareAndSet"] })
      const fiber = yield* Effect.fork(Effect.forEach([1, 2, 3], (id) => users.get(id)))
      yield* TestClock.adjust("1 second")
      deepStrictEqual(yield* Fiber.join(fiber), [Option.some("v1"), Option.some("v2"), Option.some("v3")])
      const s = yield* metrics.snapshot("user")
      assert.strictEqual(s.writeErrors, 3)
      assert.strictEqual(s.store.droppedWrites, 3)
    }).pipe(Effect.provide(TestStore({ failureThreshold: 100 }))))

  type Op =
    | { readonly _tag: "get"; readonly id: number }
    | { readonly _tag: "write"; readonly id: number }
    | { readonly _tag: "fault"; readonly fault: "failAll" | "failDeletes" | "failSets" | "hang" | "heal" }
    | { readonly _tag: "wait"; readonly millis: number }

  const id = FastCheck.integer({ min: 0, max: 1 })
  const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
    { arbitrary: FastCheck.record({ _tag: FastCheck.constant("get" as const), id }), weight: 6 },
    { arbitrary: FastCheck.record({ _tag: FastCheck.constant("write" as const), id }), weight: 3 },
    {
      arbitrary: FastCheck.record({
        _tag: FastCheck.constant("fault" as const),
        fault: FastCheck.constantFrom(
          "heal" as const,
          "failAll" as const,
          "failDeletes" as const,
          "failSets" as const,
          "hang" as const
        )
      }),
      weight: 3
    },
    {
      arbitrary: FastCheck.record({
        _tag: FastCheck.constant("fault" as const),
        fault: FastCheck.constant("heal" as const)
      }),
      weight: 2
    },
    {
      arbitrary: FastCheck.record({
        _tag: FastCheck.constant("wait" as const),
        millis: FastCheck.integer({ min: 0, max: 3000 })
      }),
      weight: 1
    }
  )

  /** Outages that hide an invalidation from a store which comes back with the old value. */
  const outages: Array<[Array<Op>, 2 | 5 | 1000]> = (["failAll", "failDeletes", "hang"] as const).flatMap((fault) =>
    ([5, 1000] as const).map((threshold): [Array<Op>, 2 | 5 | 1000] => [[
      { _tag: "get", id: 0 },
      { _tag: "fault", fault },
      { _tag: "write", id: 0 },
      { _tag: "get", id: 0 },
      { _tag: "fault", fault: "heal" },
      { _tag: "get", id: 0 },
      { _tag: "get", id: 0 }
    ], threshold])
  )

  it.scoped.prop(
    "whatever the store does, no get fails and none returns a value older than the data source's",
    [FastCheck.array(op, { maxLength: 40 }), FastCheck.constantFrom(2, 5, 1000)],
    ([ops, failureThreshold]) =>
      Effect.gen(function*() {
        const { db, faults, metrics, users } = yield* setup
        let version = 0
        let gets = 0
        const check = (key: number) =>
          Effect.gen(function*() {
            gets++
            const value = yield* settle(users.get(key))
            deepStrictEqual(value, db.peek(key), `get(${key})`)
          })
        for (const step of ops) {
          switch (step._tag) {
            case "get":
              yield* check(step.id)
              break
            case "write":
              yield* db.write(step.id, `w${++version}`)
              yield* settle(users.invalidate(step.id))
              break
            case "fault":
              yield* faults.heal
              if (step.fault === "failAll") yield* faults.failAll()
              if (step.fault === "failDeletes") yield* faults.failAll({ operations: ["delete", "deletePattern"] })
              if (step.fault === "failSets") yield* faults.failAll({ operations: ["set"] })
              if (step.fault === "hang") yield* faults.hang()
              break
            case "wait":
              yield* TestClock.adjust(step.millis)
              break
          }
        }
        // the store recovers: every read is right, and the cache serves again
        yield* faults.heal
        yield* TestClock.adjust("5 seconds")
        for (const key of [0, 1]) yield* check(key) // the first call may start the breaker's probe
        yield* probeRuns
        for (const key of [0, 1]) yield* check(key) // the breaker is closed: loaded and cached
        const loads = yield* db.loads
        for (const key of [0, 1]) yield* check(key)
        assert.strictEqual(yield* db.loads, loads, "hits after recovery")
        const s = yield* metrics.snapshot("user")
        assert.strictEqual(s.hits + s.misses, gets)
        assert.strictEqual(s.store.queueSize, 0)
        assert.strictEqual(s.store.breaker, "closed")
      }).pipe(Effect.provide(TestStore({ failureThreshold, maxCooldown: "4 seconds", replayInterval: "2 seconds" }))),
    { timeout: 60_000, fastCheck: { numRuns: 40, examples: outages } }
  )

  it.scoped("storeTimeout: a hung store costs one CacheAside's own time limit, then the lookup answers", () =>
    Effect.gen(function*() {
      const db = yield* DataSource.memory<number, string>([[1, "v1"]])
      const users = yield* CacheAside.make({
        namespace: "tight",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: db,
        ttl: "1 hour",
        storeTimeout: "50 millis"
      })
      const faults = yield* FaultInjection.FaultInjection
      const metrics = yield* Metrics.Metrics
      yield* faults.hang()
      const fiber = yield* Effect.fork(users.get(1))
      yield* TestClock.adjust("49 millis")
      assert.isTrue(Option.isNone(yield* Fiber.poll(fiber)), "still waiting before the limit")
      yield* TestClock.adjust("1 millis")
      assertSome(yield* Fiber.join(fiber), "v1")
      const s = yield* metrics.snapshot("tight")
      assert.strictEqual(s.fallbacks, 1)
      assert.strictEqual(yield* db.loads, 1)
    }).pipe(Effect.provide(TestStore({ timeout: "10 seconds" }))))
})
