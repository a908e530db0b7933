/**
 * Survivors of `internal/batch.ts` (see docs/mutation.md), through `CacheAside.getMany` on the
 * memory store with the store's calls and the data source's calls counted: keys already cached or
 * in flight cost no lookup, misses share one `loadMany` (a lone miss uses `load`, a key the batch
 * leaves out loads on its own), a failed store read falls back to the lookup for every key, corrupt
 * and expired entries are taken over, and a key another process is loading waits for its fill.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheStore, Codec, DataSource, FaultInjection, MemoryCacheStore, Metrics } from "../src/index.js"

const Faulty = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

/** Yields until `check` holds (a bounded number of times: never a wall-clock assertion). */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (check()) return
      yield* Effect.yieldNow()
    }
    assert.fail("the condition never held")
  })

const options = {
  namespace: "batch",
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

/**
 * A data source that counts its calls: `load`s per key and the key lists `loadMany` was given.
 * `answer` decides which keys `loadMany` answers (all by default).
 */
const source = (answer: (id: number) => boolean = () => true) => {
  const loads = new Map<number, number>()
  const batches: Array<ReadonlyArray<number>> = []
  const load = (id: number) => Effect.sync(() => (loads.set(id, (loads.get(id) ?? 0) + 1), Option.some(`v${id}`)))
  const loadMany = (ids: ReadonlyArray<number>) =>
    Effect.sync(() => {
      batches.push([...ids])
      return ids.filter(answer).map((id) => [id, Option.some(`v${id}`)] as const)
    })
  return { lookup: DataSource.make(load, loadMany), loads, batches, loadsOf: (id: number) => loads.get(id) ?? 0 }
}

const answers = (results: ReadonlyArray<Option.Option<string>>) =>
  results.map((result) => Option.getOrElse(result, () => "none"))

const setup = (extra: Partial<CacheAside.Options<number, string, string, never, never>> = {}, ds = source()) =>
  Effect.gen(function*() {
    const cache = yield* CacheAside.make({ ...options, lookup: ds.lookup, ...extra })
    const faults = yield* FaultInjection.FaultInjection
    const store = yield* CacheStore.CacheStore
    const metrics = yield* Metrics.Metrics
    return { cache, faults, store, ds, stats: () => metrics.snapshot("batch") }
  })

/** An entry of `value` that expired `agoMillis` ago, still held by the store for a minute. */
const plantExpired = (full: string, value: string, agoMillis: number) =>
  Effect.gen(function*() {
    const store = yield* CacheStore.CacheStore
    const now = yield* Clock.currentTimeMillis
    const bytes = Either.getOrThrow(
      Codec.make(Schema.String).encode({ _tag: "Value", value, expiresAt: now - agoMillis, delta: 0 })
    )
    yield* store.set(full, bytes, Duration.minutes(1))
  })

describe("getMany: what costs a lookup", () => {
  it.scoped("no keys: no store call, no lookup", () =>
    Effect.gen(function*() {
      const { cache, ds, faults } = yield* setup()
      deepStrictEqual(yield* cache.getMany([]), [])
      assert.strictEqual((yield* faults.counts).total, 0)
      assert.strictEqual(ds.batches.length, 0)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("keys all cached: one store read, no lookup", () =>
    Effect.gen(function*() {
      const { cache, ds, faults } = yield* setup()
      yield* cache.getMany([1, 2, 3])
      yield* faults.resetCounts
      deepStrictEqual(answers(yield* cache.getMany([3, 1, 2])), ["v3", "v1", "v2"])
      const counts = yield* faults.counts
      assert.strictEqual(counts.getMany, 1)
      assert.strictEqual(counts.total, 1)
      assert.strictEqual(ds.batches.length, 1)
      assert.strictEqual(ds.loads.size, 0)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("misses share one loadMany of the distinct keys; a repeated key is answered at every position", () =>
    Effect.gen(function*() {
      const { cache, ds, stats } = yield* setup()
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 1, 3])), ["v1", "v2", "v1", "v3"])
      deepStrictEqual(ds.batches, [[1, 2, 3]])
      assert.strictEqual(ds.loads.size, 0)
      const snapshot = yield* stats()
      assert.strictEqual(snapshot.misses, 3)
      assert.strictEqual(snapshot.coalesced, 0, "a key repeated in one call joins no other get")
      // and they were cached
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual(ds.batches.length, 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a lone miss among hits is loaded with load, not loadMany", () =>
    Effect.gen(function*() {
      const { cache, ds } = yield* setup()
      yield* cache.getMany([1, 2])
      yield* cache.invalidate(2)
      deepStrictEqual(answers(yield* cache.getMany([1, 2])), ["v1", "v2"])
      assert.strictEqual(ds.batches.length, 1)
      assert.strictEqual(ds.loadsOf(2), 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a key loadMany leaves out is loaded on its own (and cached), the others are not loaded again", () =>
    Effect.gen(function*() {
      const ds = source((id) => id !== 2)
      const { cache } = yield* setup({}, ds)
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      deepStrictEqual(ds.batches, [[1, 2, 3]])
      assert.strictEqual(ds.loadsOf(2), 1)
      assert.strictEqual(ds.loadsOf(1) + ds.loadsOf(3), 0)
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual(ds.batches.length, 1)
      assert.strictEqual(ds.loadsOf(2), 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a not-found from loadMany is answered None and cached as such", () =>
    Effect.gen(function*() {
      const loadMany = (ids: ReadonlyArray<number>) =>
        Effect.succeed(ids.map((id) => [id, id === 2 ? Option.none<string>() : Option.some(`v${id}`)] as const))
      const loads: Array<number> = []
      const lookup = DataSource.make(
        (id: number) => Effect.sync(() => (loads.push(id), Option.some(`v${id}`))),
        loadMany
      )
      const cache = yield* CacheAside.make({ ...options, lookup })
      const first = yield* cache.getMany([1, 2])
      assertSome(first[0]!, "v1")
      assertNone(first[1]!)
      assertNone((yield* cache.getMany([1, 2]))[1]!)
      assertSome(yield* cache.getOption(2), Option.none())
      deepStrictEqual(loads, [])
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a key a get is already loading is joined, not loaded again (counted as coalesced)", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const loads = new Map<number, number>()
      const batches: Array<ReadonlyArray<number>> = []
      const lookup = DataSource.make(
        (id: number) =>
          Effect.sync(() => loads.set(id, (loads.get(id) ?? 0) + 1)).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.as(Option.some(`v${id}`))
          ),
        (ids: ReadonlyArray<number>) =>
          Effect.sync(() => (batches.push([...ids]), ids.map((id) => [id, Option.some(`v${id}`)] as const)))
      )
      const { cache, stats } = yield* setup({ lookup })
      const get = yield* Effect.fork(cache.get(1))
      yield* until(() => loads.get(1) === 1)
      const many = yield* Effect.fork(cache.getMany([1, 2, 3]))
      yield* until(() => batches.length === 1)
      deepStrictEqual(batches, [[2, 3]])
      yield* Deferred.succeed(gate, undefined)
      deepStrictEqual(answers(yield* Fiber.join(many)), ["v1", "v2", "v3"])
      assertSome(yield* Fiber.join(get), "v1")
      assert.strictEqual(loads.get(1), 1)
      assert.strictEqual((yield* stats()).coalesced, 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("keys all in flight already: the getMany joins them and makes no store call of its own", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let loads = 0
      const lookup = (id: number) =>
        Effect.sync(() => loads++).pipe(Effect.zipRight(Deferred.await(gate)), Effect.as(Option.some(`v${id}`)))
      const { cache, faults } = yield* setup({ lookup })
      const gets = yield* Effect.fork(Effect.all([cache.get(1), cache.get(2)], { concurrency: "unbounded" }))
      yield* until(() => loads === 2)
      yield* faults.resetCounts
      const many = yield* Effect.fork(cache.getMany([2, 1, 2]))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      deepStrictEqual(answers(yield* Fiber.join(many)), ["v2", "v1", "v2"])
      yield* Fiber.join(gets)
      assert.strictEqual(loads, 2)
      assert.strictEqual((yield* faults.counts).getMany, 0)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("without loadMany, misses load one by one, at most getManyConcurrency at once", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let running = 0
      let most = 0
      const lookup = (id: number) =>
        Effect.sync(() => (running++, most = Math.max(most, running))).pipe(
          Effect.zipRight(Deferred.await(gate)),
          Effect.ensuring(Effect.sync(() => running--)),
          Effect.as(Option.some(`v${id}`))
        )
      const cache = yield* CacheAside.make({ ...options, lookup, getManyConcurrency: 2 })
      const many = yield* Effect.fork(cache.getMany([1, 2, 3, 4, 5]))
      yield* until(() => running === 2)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assert.strictEqual(most, 2)
      yield* Deferred.succeed(gate, undefined)
      deepStrictEqual(answers(yield* Fiber.join(many)), ["v1", "v2", "v3", "v4", "v5"])
      assert.strictEqual(most, 2)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a failing loadMany fails the getMany with its error, and nothing is cached", () =>
    Effect.gen(function*() {
      let fail = true
      let batches = 0
      const lookup = DataSource.make(
        (id: number) => Effect.succeed(Option.some(`v${id}`)),
        (ids: ReadonlyArray<number>) =>
          Effect.suspend(() => {
            batches++
            return fail
              ? Effect.fail("db down" as const)
              : Effect.succeed(ids.map((id) => [id, Option.some(`v${id}`)] as const))
          })
      )
      const cache = yield* CacheAside.make({ ...options, lookup })
      const exit = yield* Effect.exit(cache.getMany([1, 2, 3]))
      deepStrictEqual(exit, Exit.fail("db down" as const))
      fail = false
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual(batches, 2)
    }).pipe(Effect.provide(Faulty)))
})

/**
 * A memory store where another process takes the lease of `racing.key` right after this process's
 * next `getMany` read it (the batch then finds that lease when it tries to take its own).
 */
const racing = { keys: [] as Array<string> }
const Racing = Layer.provideMerge(
  Layer.effect(
    CacheStore.CacheStore,
    Effect.map(MemoryCacheStore.make(), (inner) =>
      CacheStore.CacheStore.of({
        ...inner,
        getMany: (keys) =>
          Effect.tap(inner.getMany(keys), () => {
            const taken = racing.keys
            racing.keys = []
            return Effect.forEach(taken, (key) => inner.set(key, Codec.lease("another process"), Duration.minutes(1)))
          })
      }))
  ),
  Metrics.layer
)

describe("getMany: a lease another process takes between the batch's read and its own lease", () => {
  it.scoped("with the lock, that key waits for the other process's fill; the batch loads the rest", () =>
    Effect.gen(function*() {
      const ds = source()
      const cache = yield* CacheAside.make({
        ...options,
        lookup: ds.lookup,
        lock: { wait: "1 second", poll: "10 millis" }
      })
      const store = yield* CacheStore.CacheStore
      racing.keys = [cache.keyOf(1)]
      const many = yield* Effect.fork(cache.getMany([1, 2, 3]))
      yield* until(() => ds.batches.length === 1)
      deepStrictEqual(ds.batches, [[2, 3]])
      const now = yield* Clock.currentTimeMillis
      const filled = Either.getOrThrow(
        Codec.make(Schema.String).encode({ _tag: "Value", value: "theirs", expiresAt: now + 60_000, delta: 0 })
      )
      yield* store.set(cache.keyOf(1), filled, Duration.minutes(1))
      yield* TestClock.adjust("10 millis")
      deepStrictEqual(answers(yield* Fiber.join(many)), ["theirs", "v2", "v3"])
      assert.strictEqual(ds.loadsOf(1), 0)
      deepStrictEqual(ds.batches, [[2, 3]])
    }).pipe(Effect.provide(Racing)))

  it.scoped("without the lock, the batch loads that key too (and leaves the other process's lease alone)", () =>
    Effect.gen(function*() {
      const ds = source()
      const cache = yield* CacheAside.make({ ...options, lookup: ds.lookup, lock: false })
      const store = yield* CacheStore.CacheStore
      racing.keys = [cache.keyOf(1)]
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      deepStrictEqual(ds.batches, [[1, 2, 3]])
      const held = yield* store.get(cache.keyOf(1))
      assert.isTrue(Option.isSome(held) && Codec.isLease(held.value))
    }).pipe(Effect.provide(Racing)))
})

describe("getMany: the batch's edges", () => {
  it.scoped("every miss's lease taken by another process meanwhile: they wait, and loadMany is not called at all", () =>
    Effect.gen(function*() {
      const ds = source()
      const cache = yield* CacheAside.make({
        ...options,
        lookup: ds.lookup,
        lock: { wait: "1 second", poll: "10 millis" }
      })
      const store = yield* CacheStore.CacheStore
      racing.keys = [cache.keyOf(1), cache.keyOf(2)]
      const many = yield* Effect.fork(cache.getMany([1, 2]))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      const now = yield* Clock.currentTimeMillis
      for (const id of [1, 2]) {
        const filled = Either.getOrThrow(
          Codec.make(Schema.String).encode({ _tag: "Value", value: `theirs${id}`, expiresAt: now + 60_000, delta: 0 })
        )
        yield* store.set(cache.keyOf(id), filled, Duration.minutes(1))
      }
      yield* TestClock.adjust("10 millis")
      deepStrictEqual(answers(yield* Fiber.join(many)), ["theirs1", "theirs2"])
      deepStrictEqual(ds.batches, [])
      assert.strictEqual(ds.loads.size, 0)
    }).pipe(Effect.provide(Racing)))

  it.scoped("the misses' leases are taken at once, not one store round trip after another", () =>
    Effect.gen(function*() {
      const { cache, ds, faults } = yield* setup()
      // an absent key's lease is taken by a lease-read (one script call per turn on Redis)
      yield* faults.latency("10 millis", { operations: ["getOrLease"] })
      const many = yield* Effect.fork(cache.getMany([1, 2, 3]))
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      yield* TestClock.adjust("10 millis") // one round trip: every lease is back
      yield* until(() => ds.batches.length === 1)
      deepStrictEqual(answers(yield* Fiber.join(many)), ["v1", "v2", "v3"])
      const counts = yield* faults.counts
      assert.strictEqual(counts.getOrLease, 3)
      assert.strictEqual(counts.setIfAbsent, 0)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("the store's read failing and loadMany leaving a key out: that key still loads on its own", () =>
    Effect.gen(function*() {
      const ds = source((id) => id !== 2)
      const { cache, faults } = yield* setup({}, ds)
      yield* faults.failNext(1, { operations: ["getMany"] })
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      deepStrictEqual(ds.batches, [[1, 2, 3]])
      assert.strictEqual(ds.loadsOf(2), 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("keys loadMany leaves out load on their own, at most getManyConcurrency at once", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let running = 0
      let most = 0
      const lookup = DataSource.make(
        (id: number) =>
          Effect.sync(() => (running++, most = Math.max(most, running))).pipe(
            Effect.zipRight(Deferred.await(gate)),
            Effect.ensuring(Effect.sync(() => running--)),
            Effect.as(Option.some(`v${id}`))
          ),
        () => Effect.succeed([])
      )
      const cache = yield* CacheAside.make({ ...options, lookup, getManyConcurrency: 2 })
      const many = yield* Effect.fork(cache.getMany([1, 2, 3, 4]))
      yield* until(() => running === 2)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assert.strictEqual(most, 2)
      yield* Deferred.succeed(gate, undefined)
      deepStrictEqual(answers(yield* Fiber.join(many)), ["v1", "v2", "v3", "v4"])
      assert.strictEqual(most, 2)
    }).pipe(Effect.provide(Faulty)))
})

describe("getMany: what the batch finds in the store", () => {
  it.scoped("the store's read failing: every key from one loadMany, each counted as a fallback, no lease taken", () =>
    Effect.gen(function*() {
      const { cache, ds, faults, stats } = yield* setup()
      yield* faults.failNext(1, { operations: ["getMany"] })
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      deepStrictEqual(ds.batches, [[1, 2, 3]])
      const snapshot = yield* stats()
      assert.strictEqual(snapshot.fallbacks, 3)
      assert.strictEqual(snapshot.misses, 3)
      assert.strictEqual((yield* faults.counts).setIfAbsent, 0)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("the store's read failing, without loadMany: each key loads alone, one cache error for the one failed read", () =>
    Effect.gen(function*() {
      let loads = 0
      const { cache, faults, stats } = yield* setup({
        lookup: (id: number) => Effect.sync(() => (loads++, Option.some(`v${id}`)))
      })
      yield* faults.failNext(1, { operations: ["getMany"] })
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual(loads, 3)
      const snapshot = yield* stats()
      assert.strictEqual(snapshot.cacheErrors, 1, "one store operation failed")
      assert.strictEqual(snapshot.fallbacks, 3)
      assert.strictEqual(snapshot.misses, 3)
      assert.strictEqual((yield* faults.counts).setIfAbsent, 0)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("corrupt entries are counted, taken over and replaced by the loaded values", () =>
    Effect.gen(function*() {
      const { cache, ds, stats, store } = yield* setup()
      yield* store.set(cache.keyOf(1), Buffer.from("{garbage"), Duration.minutes(1))
      yield* store.set(cache.keyOf(2), Buffer.from("[1,2"), Duration.minutes(1))
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual((yield* stats()).decodeErrors, 2)
      deepStrictEqual(ds.batches, [[1, 2, 3]])
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual(ds.batches.length, 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("expired entries still held are taken over and replaced", () =>
    Effect.gen(function*() {
      const { cache, ds } = yield* setup()
      yield* plantExpired(cache.keyOf(1), "old1", 10)
      yield* plantExpired(cache.keyOf(2), "old2", 10)
      deepStrictEqual(answers(yield* cache.getMany([1, 2])), ["v1", "v2"])
      deepStrictEqual(ds.batches, [[1, 2]])
      deepStrictEqual(answers(yield* cache.getMany([1, 2])), ["v1", "v2"])
      assert.strictEqual(ds.batches.length, 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a key another process is loading (its lease) waits for that fill while the batch loads the rest", () =>
    Effect.gen(function*() {
      const { cache, ds, store } = yield* setup({ lock: { wait: "1 second", poll: "10 millis" } })
      yield* store.set(cache.keyOf(1), Codec.lease("another process"), Duration.minutes(1))
      const many = yield* Effect.fork(cache.getMany([1, 2, 3]))
      yield* until(() => ds.batches.length === 1)
      deepStrictEqual(ds.batches, [[2, 3]])
      // the other process fills key 1
      const now = yield* Clock.currentTimeMillis
      const filled = Either.getOrThrow(
        Codec.make(Schema.String).encode({ _tag: "Value", value: "theirs", expiresAt: now + 60_000, delta: 0 })
      )
      yield* store.set(cache.keyOf(1), filled, Duration.minutes(1))
      yield* TestClock.adjust("10 millis")
      deepStrictEqual(answers(yield* Fiber.join(many)), ["theirs", "v2", "v3"])
      assert.strictEqual(ds.loadsOf(1), 0)
      deepStrictEqual(ds.batches, [[2, 3]])
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a key waiting for another process's fill takes none of the getManyConcurrency slots", () =>
    Effect.gen(function*() {
      const loads: Array<number> = []
      const lookup = (id: number) => Effect.sync(() => (loads.push(id), Option.some(`v${id}`)))
      const { cache, store } = yield* setup({
        lookup,
        getManyConcurrency: 1,
        lock: { wait: "1 second", poll: "10 millis" }
      })
      yield* store.set(cache.keyOf(1), Codec.lease("another process"), Duration.minutes(1))
      const many = yield* Effect.fork(cache.getMany([1, 2]))
      yield* until(() => loads.length === 1) // key 2 loads while key 1 waits (no clock moved)
      deepStrictEqual(loads, [2])
      const now = yield* Clock.currentTimeMillis
      const filled = Either.getOrThrow(
        Codec.make(Schema.String).encode({ _tag: "Value", value: "theirs", expiresAt: now + 60_000, delta: 0 })
      )
      yield* store.set(cache.keyOf(1), filled, Duration.minutes(1))
      yield* TestClock.adjust("10 millis")
      deepStrictEqual(answers(yield* Fiber.join(many)), ["theirs", "v2"])
      deepStrictEqual(loads, [2])
    }).pipe(Effect.provide(Faulty)))

  it.scoped("without the lock, keys under other processes' leases load within getManyConcurrency", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      let running = 0
      let most = 0
      const lookup = (id: number) =>
        Effect.sync(() => (running++, most = Math.max(most, running))).pipe(
          Effect.zipRight(Deferred.await(gate)),
          Effect.ensuring(Effect.sync(() => running--)),
          Effect.as(Option.some(`v${id}`))
        )
      const { cache, store } = yield* setup({ lookup, getManyConcurrency: 1, lock: false })
      for (const id of [1, 2, 3]) {
        yield* store.set(cache.keyOf(id), Codec.lease("another process"), Duration.minutes(1))
      }
      const many = yield* Effect.fork(cache.getMany([1, 2, 3]))
      yield* until(() => running === 1)
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assert.strictEqual(most, 1)
      yield* Deferred.succeed(gate, undefined)
      deepStrictEqual(answers(yield* Fiber.join(many)), ["v1", "v2", "v3"])
      assert.strictEqual(most, 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("without the lock, a key under another process's lease is loaded by the batch", () =>
    Effect.gen(function*() {
      const { cache, ds, store } = yield* setup({ lock: false })
      yield* store.set(cache.keyOf(1), Codec.lease("another process"), Duration.minutes(1))
      deepStrictEqual(answers(yield* cache.getMany([1, 2, 3])), ["v1", "v2", "v3"])
      assert.strictEqual(ds.loadsOf(1), 1)
      deepStrictEqual(ds.batches, [[2, 3]])
    }).pipe(Effect.provide(Faulty)))
})
