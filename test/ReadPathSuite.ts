/**
 * The read path's regressions, one test per defect of issue 8 (and the read-path parts of issue 9),
 * run once per store (memory and Redis). Two caches with the same namespace over one store play two
 * processes. Every test counts outcomes (lookups, lock waits, leases left); time only bounds hangs.
 */
import { CacheAside, CacheStore, Codec, DataSource, FaultInjection, Metrics } from "@cache-aside/core"
import type { Vitest } from "@effect/vitest"
import { assert, describe } from "@effect/vitest"
import { assertInstanceOf, assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import { Cause, Deferred, Duration, Effect, Either, Exit, Fiber, Layer, Option, Schema, TestServices } from "effect"
import { advance, DbError, elapse, uniqueNamespace, User, withTimePassing } from "./CacheAsideSuite.js"

/** A generous bound against hangs: never an assertion about speed. */
const hangBound = Duration.seconds(10)

/** Polls (in real time, within the hang bound) until `check` holds. */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 500; i++) {
      if (yield* check) return true
      yield* Effect.sleep("10 millis").pipe(TestServices.provideLive)
    }
    return false
  })

/** A lookup whose calls wait for `release` (when set), counting calls and interruptions. */
const gated = () => {
  const state = {
    calls: 0,
    interrupted: 0,
    started: Effect.runSync(Deferred.make<void>()),
    release: Effect.runSync(Deferred.make<void>())
  }
  const lookup = (id: number) =>
    Effect.gen(function*() {
      state.calls++
      yield* Deferred.succeed(state.started, undefined)
      yield* Deferred.await(state.release)
      return Option.some(new User({ id, name: `user ${id}` }))
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => state.interrupted++)))
  return { state, lookup }
}

const plain = (id: number) => Effect.succeed(Option.some(new User({ id, name: `user ${id}` })))

export const suite = <R>(
  it: Vitest.MethodsNonLive<R>,
  store: Layer.Layer<CacheStore.CacheStore, unknown, R | Metrics.Metrics>
) => {
  const services = Layer.provideMerge(store, Metrics.layer)
  const faulty = Layer.provideMerge(FaultInjection.layer(store), Metrics.layer)

  const userCache = (
    namespace: string,
    lookup: (id: number) => Effect.Effect<Option.Option<User>, DbError>,
    extra: Partial<CacheAside.Options<number, User, typeof User.Encoded, DbError, never>> = {}
  ) =>
    CacheAside.make({
      namespace,
      key: (id: number) => String(id),
      schema: User,
      lookup,
      ttl: "1 minute",
      jitter: 0,
      ...extra
    })

  const counts = (namespace: string) => Effect.flatMap(Metrics.Metrics, (metrics) => metrics.snapshot(namespace))

  const noLease = (key: string) =>
    Effect.flatMap(CacheStore.CacheStore, (store) => Effect.map(store.get(key), Option.isNone))

  describe("leases are released on every exit (defect 1)", () => {
    it.scoped("a not-found that is not cached (negativeTtl 0) leaves no lease: another process does not wait", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const none = () => Effect.succeed(Option.none<User>())
        const a = yield* userCache(namespace, none, { negativeTtl: 0 })
        const b = yield* userCache(namespace, none, { negativeTtl: 0 })
        assertNone(yield* a.get(404))
        assertTrue(yield* noLease(a.keyOf(404)))
        assertNone(yield* b.get(404))
        assert.strictEqual((yield* counts(namespace)).lockWaits, 0)
      }).pipe(Effect.provide(services)))

    it.scoped("a lookup that throws instead of returning an effect: the get dies with it, counted, and leaves no lease", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const boom = new Error("boom")
        const throwing = (): Effect.Effect<Option.Option<User>, DbError> => {
          throw boom
        }
        const a = yield* userCache(namespace, throwing)
        deepStrictEqual(yield* Effect.exit(a.get(1)), Exit.die(boom))
        assertTrue(yield* noLease(a.keyOf(1)), "the lease was released")
        // another process loads at once: no lease to wait for
        const b = yield* userCache(namespace, plain)
        assertSome(yield* b.get(1), new User({ id: 1, name: "user 1" }))
        const s = yield* counts(namespace)
        assert.strictEqual(s.lockWaits, 0)
        assert.strictEqual(s.loadErrors, 1, "the throw is a failed lookup")
        assert.strictEqual(s.loads, 2)
        // getMany, through a loadMany that throws
        const many = yield* userCache(namespace, plain, {
          lookup: DataSource.make(plain, () => {
            throw boom
          })
        } as Partial<CacheAside.Options<number, User, typeof User.Encoded, DbError, never>>)
        deepStrictEqual(yield* Effect.exit(many.getMany([2, 3])), Exit.die(boom))
        assertTrue(yield* noLease(a.keyOf(2)), "no lease left for 2")
        assertTrue(yield* noLease(a.keyOf(3)), "no lease left for 3")
      }).pipe(Effect.provide(services)))

    it.scoped("a leader interrupted by its caller leaves no lease, and its load is interrupted", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const { lookup, state } = gated()
        const a = yield* userCache(namespace, lookup)
        const fiber = yield* Effect.fork(a.get(1))
        yield* Deferred.await(state.started)
        yield* Fiber.interrupt(fiber)
        assertTrue(yield* eventually(noLease(a.keyOf(1))), "the lease was released")
        assert.strictEqual(state.interrupted, 1)
        const b = yield* userCache(namespace, plain)
        assertSome(yield* b.get(1), new User({ id: 1, name: "user 1" }))
        assert.strictEqual((yield* counts(namespace)).lockWaits, 0)
      }).pipe(Effect.provide(services)))

    it.scoped("an invalidation while the leader's lease-read is in flight: no fill, and no lease left", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const faults = yield* FaultInjection.FaultInjection
        let loads = 0
        const a = yield* userCache(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.some(new User({ id, name: "n" }))))
        )
        yield* faults.latency("100 millis", { operations: ["getOrLease"] })
        const fiber = yield* Effect.fork(a.get(1))
        assertTrue(
          yield* eventually(Effect.map(faults.counts, (c) => c.getOrLease === 1)),
          "the leader's read (which takes the lease) is in flight"
        )
        yield* a.invalidate(1) // before the read and its lease land
        yield* faults.heal
        const exit = yield* withTimePassing(Fiber.join(fiber))
        assertTrue(Exit.isSuccess(exit))
        assertTrue(yield* noLease(a.keyOf(1)), "the lease was released")
        yield* a.get(1)
        assert.strictEqual(loads, 2, "the invalidated load was not cached")
      }).pipe(Effect.provide(faulty)))

    it.scoped("a value the encoding cannot carry (NaN) is answered, not cached, counted, and leaves no lease", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        let loads = 0
        const cache = yield* CacheAside.make({
          namespace,
          key: (id: number) => String(id),
          schema: Schema.Number,
          lookup: () => Effect.sync(() => (loads++, Option.some(Number.NaN))),
          ttl: "1 minute"
        })
        const first = yield* cache.get(1)
        assertTrue(Option.isSome(first) && Number.isNaN(first.value))
        assertTrue(yield* noLease(cache.keyOf(1)))
        yield* cache.get(1)
        assert.strictEqual(loads, 2, "never cached, so never evicted as corrupt either")
        const s = yield* counts(namespace)
        assert.strictEqual(s.writeErrors, 2)
        assert.strictEqual(s.decodeErrors, 0)
      }).pipe(Effect.provide(services)))

    it.scoped("getMany leaves no lease for the keys it does not cache", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const source = yield* DataSource.memory<number, User>([[1, new User({ id: 1, name: "one" })]])
        const cache = yield* userCache(namespace, source.load, {
          lookup: source,
          negativeTtl: 0
        } as Partial<CacheAside.Options<number, User, typeof User.Encoded, DbError, never>>)
        const answers = yield* cache.getMany([1, 404, 405])
        assertSome(answers[0]!, new User({ id: 1, name: "one" }))
        assertNone(answers[1]!)
        assertTrue(yield* noLease(cache.keyOf(404)))
        assertTrue(yield* noLease(cache.keyOf(405)))
      }).pipe(Effect.provide(services)))
  })

  describe("one key, one load in flight (defect 4)", () => {
    it.scoped("after a soft timeout, later gets answer the stale value and join the running load", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        let calls = 0
        let slow = false
        const cache = yield* userCache(
          namespace,
          (id) =>
            Effect.gen(function*() {
              calls++
              if (slow) yield* Effect.sleep("2 seconds")
              return Option.some(new User({ id, name: `v${calls}` }))
            }),
          { ttl: "100 millis", failSafe: { maxStale: "1 hour" }, lookupTimeout: { soft: "50 millis" } }
        )
        yield* cache.get(1)
        slow = true
        yield* elapse("150 millis")
        for (let i = 0; i < 10; i++) {
          const exit = yield* withTimePassing(cache.get(1))
          assertTrue(Exit.isSuccess(exit))
          assert.strictEqual(Option.getOrThrow(exit.value).name, "v1")
        }
        assert.strictEqual(calls, 2, "one load for the ten gets after the soft timeout")
      }).pipe(Effect.provide(services)))
  })

  describe("fail-safe keeps the lock (defect 5)", () => {
    it.scoped("two processes reloading a fail-safe entry load once; the other answers the stale value", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const { lookup, state } = gated()
        const options = { ttl: "100 millis", failSafe: { maxStale: "1 hour" } } as const
        const a = yield* userCache(namespace, lookup, options)
        const b = yield* userCache(namespace, lookup, options)
        yield* a.set(1, new User({ id: 1, name: "old" }))
        yield* elapse("150 millis") // past the TTL: held for fail-safe only
        const reloading = yield* Effect.fork(a.get(1))
        yield* Deferred.await(state.started)
        assertSome(yield* b.get(1), new User({ id: 1, name: "old" }))
        yield* Deferred.succeed(state.release, undefined)
        assertSome(yield* Fiber.join(reloading), new User({ id: 1, name: "user 1" }))
        assert.strictEqual(state.calls, 1)
      }).pipe(Effect.provide(services)))
  })

  describe("getMany (defect 6)", () => {
    it.scoped("a batch loads its own keys while it waits for another process's lease", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const { lookup, state } = gated()
        const holder = yield* userCache(namespace, lookup)
        const holding = yield* Effect.fork(holder.get(2)) // another process holds the lease of 2
        yield* Deferred.await(state.started)
        const batches: Array<ReadonlyArray<number>> = []
        const source = DataSource.make(
          plain,
          (ids: ReadonlyArray<number>) =>
            Effect.sync(() => {
              batches.push(ids)
              return ids.map((id) => [id, Option.some(new User({ id, name: `user ${id}` }))] as const)
            })
        )
        const batcher = yield* CacheAside.make({
          namespace,
          key: (id: number) => String(id),
          schema: User,
          lookup: source,
          ttl: "1 minute"
        })
        const many = yield* Effect.fork(batcher.getMany([1, 2, 3]))
        assertTrue(yield* eventually(Effect.sync(() => batches.length === 1)), "the batch loaded its own keys")
        deepStrictEqual([...batches[0]!].sort(), [1, 3])
        yield* Deferred.succeed(state.release, undefined)
        yield* Fiber.join(holding)
        const answers = yield* withTimePassing(Fiber.join(many))
        assertTrue(Exit.isSuccess(answers))
        deepStrictEqual(answers.value.map((o) => Option.getOrThrow(o).id), [1, 2, 3])
        const s = yield* counts(namespace)
        assert.strictEqual(s.lockTimeouts, 0)
        assert.strictEqual(batches.length, 1, "2 came from the holder's fill")
      }).pipe(Effect.provide(services)))

    it.scoped("loadMany gets the hard timeout: getMany fails with LookupTimeout", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const cache = yield* CacheAside.make({
          namespace,
          key: (id: number) => String(id),
          schema: User,
          lookup: DataSource.make(plain, () => Effect.never),
          ttl: "1 minute",
          lookupTimeout: { hard: "50 millis" }
        })
        const exit = yield* withTimePassing(cache.getMany([1, 2]))
        assertTrue(Exit.isFailure(exit))
        const error = Cause.failureOption(exit.cause)
        assertTrue(Option.isSome(error) && error.value._tag === "LookupTimeout")
        const s = yield* counts(namespace)
        assert.strictEqual(s.lookupTimeouts, 1)
        assert.strictEqual(s.loadErrors, 2)
        assertTrue(yield* noLease(cache.keyOf(1)))
      }).pipe(Effect.provide(services)))

    it.scoped("loadMany answers are matched by key; a key it leaves out loads on its own", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        let singles = 0
        const source = DataSource.make(
          (id: number) => Effect.sync(() => (singles++, Option.some(new User({ id, name: `single ${id}` })))),
          (ids: ReadonlyArray<number>) =>
            Effect.succeed(
              [...ids].reverse().filter((id) => id !== 2).map((id) =>
                [id, Option.some(new User({ id, name: `batch ${id}` }))] as const
              )
            )
        )
        const cache = yield* CacheAside.make({
          namespace,
          key: (id: number) => String(id),
          schema: User,
          lookup: source,
          ttl: "1 minute"
        })
        const answers = yield* cache.getMany([1, 2, 3])
        deepStrictEqual(answers.map((o) => Option.getOrThrow(o).name), ["batch 1", "single 2", "batch 3"])
        assert.strictEqual(singles, 1)
        assertSome(yield* cache.get(2), new User({ id: 2, name: "single 2" }))
      }).pipe(Effect.provide(services)))

    it.scoped("without loadMany, misses load with bounded concurrency", () =>
      Effect.gen(function*() {
        let running = 0
        let most = 0
        const cache = yield* userCache(uniqueNamespace(), (id) =>
          Effect.acquireUseRelease(
            Effect.sync(() => most = Math.max(most, ++running)),
            () => Effect.as(Effect.yieldNow(), Option.some(new User({ id, name: "n" }))),
            () => Effect.sync(() => running--)
          ), { getManyConcurrency: 4 })
        const answers = yield* cache.getMany(Array.from({ length: 40 }, (_, i) => i))
        assert.strictEqual(answers.length, 40)
        assert.isAtMost(most, 4)
        assert.isAtLeast(most, 2)
      }).pipe(Effect.provide(services)))
  })

  describe("values (defect 7)", () => {
    it.scoped("a miss answers the same shape as a hit: a class instance even from a plain-object lookup", () =>
      Effect.gen(function*() {
        const cache = yield* userCache(
          uniqueNamespace(),
          (id) => Effect.succeed(Option.some({ id, name: "plain" } as User))
        )
        const miss = yield* cache.get(1)
        const hit = yield* cache.get(1)
        assertInstanceOf(Option.getOrThrow(miss), User)
        assertInstanceOf(Option.getOrThrow(hit), User)
      }).pipe(Effect.provide(services)))
  })

  describe("entries and keys from outside (issue 9)", () => {
    it.scoped("an entry past every window but still held is taken over: one load, no lock wait", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const store = yield* CacheStore.CacheStore
        let loads = 0
        const cache = yield* userCache(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.some(new User({ id, name: "new" }))))
        )
        const dead = Either.getOrThrow(
          Codec.make(User).encode({ _tag: "Value", value: new User({ id: 1, name: "dead" }), expiresAt: 0, delta: 0 })
        )
        yield* store.set(cache.keyOf(1), dead, Duration.minutes(1))
        assertSome(yield* cache.get(1), new User({ id: 1, name: "new" }))
        assertSome(yield* cache.get(1), new User({ id: 1, name: "new" }))
        assert.strictEqual(loads, 1)
        assert.strictEqual((yield* counts(namespace)).lockWaits, 0)
      }).pipe(Effect.provide(services)))

    it.scoped("an entry in a newer format is a miss left alone: loaded and answered, never evicted or overwritten", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        const store = yield* CacheStore.CacheStore
        let loads = 0
        const cache = yield* userCache(
          namespace,
          (id) => Effect.sync(() => (loads++, Option.some(new User({ id, name: "n" }))))
        )
        const newer = new TextEncoder().encode(JSON.stringify({ f: 99, anything: ["a", "later", "shape"] }))
        yield* store.set(cache.keyOf(1), newer, Duration.minutes(1))
        assertSome(yield* cache.get(1), new User({ id: 1, name: "n" }))
        assertSome(yield* cache.get(1), new User({ id: 1, name: "n" }))
        assert.strictEqual(loads, 2, "never cached over the newer entry")
        const held = yield* store.get(cache.keyOf(1))
        assertTrue(
          Option.isSome(held) && Buffer.from(held.value).equals(Buffer.from(newer)),
          "the newer entry is intact"
        )
        const s = yield* counts(namespace)
        assert.strictEqual(s.decodeErrors, 0)
        assert.strictEqual(s.lockWaits, 0)
      }).pipe(Effect.provide(services)))

    it.scoped("lone surrogates and the escape character map to distinct keys, identically on every store", () =>
      Effect.gen(function*() {
        const keys = ["id\uD800", "id\uDBFF", "id\uDFFF", "id\uFFFD", "id\u0010ud800", "id\uD83D\uDE00"]
        let loads = 0
        const cache = yield* CacheAside.make({
          namespace: uniqueNamespace(),
          key: (k: string) => k,
          schema: Schema.String,
          lookup: (k: string) => Effect.sync(() => (loads++, Option.some(`value of ${JSON.stringify(k)}`))),
          ttl: "1 minute"
        })
        for (const k of keys) yield* cache.get(k)
        for (const k of keys) assertSome(yield* cache.get(k), `value of ${JSON.stringify(k)}`)
        assert.strictEqual(loads, keys.length)
        assert.strictEqual(new Set(keys.map(cache.keyOf)).size, keys.length)
      }).pipe(Effect.provide(services)))
  })

  describe("fail-safe throttle (defect 10)", () => {
    it.scoped("a throttled stale value never outlives failSafe.maxStale", () =>
      Effect.gen(function*() {
        let failing = false
        const cache = yield* userCache(
          uniqueNamespace(),
          (id) => failing ? Effect.fail(new DbError({ message: "down" })) : plain(id),
          // minutes on the TestClock (the envelope decides): Redis's own PX, ttl + maxStale in real
          // time, must not drop the entry while a loaded machine stalls before the stale read
          { ttl: "1 minute", failSafe: { maxStale: "3 minutes", throttle: "100 minutes" } }
        )
        yield* cache.get(1)
        failing = true
        yield* advance("90 seconds")
        assertSome(yield* cache.get(1), new User({ id: 1, name: "user 1" })) // stale, throttled
        yield* advance("3 minutes") // past expiry + maxStale, within the throttle
        const exit = yield* Effect.exit(cache.get(1))
        assertTrue(Exit.isFailure(exit), "the stale value is gone: the lookup's error is answered")
      }).pipe(Effect.provide(services)))
  })

  describe("the handle's getOption and refresh (issue 11)", () => {
    it.scoped("getOption reads and never loads; refresh reloads now while gets serve the old value", () =>
      Effect.gen(function*() {
        const namespace = uniqueNamespace()
        let version = 1
        let loads = 0
        const { state } = gated()
        let gate = false
        const cache = yield* userCache(namespace, (id) =>
          Effect.gen(function*() {
            loads++
            if (gate) {
              yield* Deferred.succeed(state.started, undefined)
              yield* Deferred.await(state.release)
            }
            return Option.some(new User({ id, name: `v${version}` }))
          }))
        assertNone(yield* cache.getOption(1))
        assert.strictEqual(loads, 0)
        yield* cache.get(1)
        assertSome(yield* cache.getOption(1), Option.some(new User({ id: 1, name: "v1" })))
        version = 2
        gate = true
        const refreshing = yield* Effect.fork(cache.refresh(1))
        yield* Deferred.await(state.started)
        assertSome(yield* cache.get(1), new User({ id: 1, name: "v1" })) // served meanwhile
        yield* Deferred.succeed(state.release, undefined)
        yield* Fiber.join(refreshing)
        assertSome(yield* cache.get(1), new User({ id: 1, name: "v2" }))
        assert.strictEqual(loads, 2)
      }).pipe(Effect.provide(services)))
  })

  return { hangBound }
}
