/**
 * The near cache in the read path, on the memory store: hits without a store round trip, this
 * process's writes evicting before they return, other instances evicted through the bus, a lost
 * bus bypassing and flushing, and `lookupConcurrency` bounding concurrent lookups. Counted.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheBus, CacheStore, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

const rows = (names: ReadonlyArray<string>) => names.map((name, id) => [id, new User({ id, name })] as const)

/** The memory store, with its reads (`get`, lease-reads, `getMany`'s keys) counted. */
const countingStore = Effect.gen(function*() {
  const inner = yield* MemoryCacheStore.make()
  let reads = 0
  const store = CacheStore.CacheStore.of({
    ...inner,
    get: (key) => Effect.suspend(() => (reads++, inner.get(key))),
    getOrLease: (key, lease, ttl) => Effect.suspend(() => (reads++, inner.getOrLease(key, lease, ttl))),
    getMany: (keys) => Effect.suspend(() => (reads += keys.length, inner.getMany(keys)))
  })
  return { store, reads: () => reads }
})

const makeCache = (
  source: DataSource.DataSource<number, User, never, never>,
  extra: Partial<CacheAside.Options<number, User, typeof User.Encoded, never, never>> = {}
) =>
  CacheAside.make({
    namespace: "near",
    key: (id: number) => String(id),
    schema: User,
    lookup: source,
    ttl: "1 minute",
    jitter: 0,
    nearCache: { maxEntries: 100, ttl: "10 seconds" },
    ...extra
  })

describe("near cache in the read path", () => {
  it.scoped("a near hit makes no store read and decodes nothing; the near ttl sends the next read to the store", () =>
    Effect.gen(function*() {
      const { store, reads } = yield* countingStore
      const source = yield* DataSource.memory<number, User>(rows(["a"]))
      const cache = yield* makeCache(source).pipe(Effect.provideService(CacheStore.CacheStore, store))
      const first = yield* cache.get(0) // miss: read, load, fill
      const readsAfterMiss = reads()
      for (let i = 0; i < 10; i++) assert.strictEqual(yield* cache.get(0), first)
      assert.strictEqual(reads(), readsAfterMiss, "near hits read nothing from the store")
      const snapshot = yield* (yield* Metrics.Metrics).snapshot("near")
      assert.strictEqual(snapshot.nearHits, 10)
      assert.strictEqual(snapshot.hits, 10)
      yield* TestClock.adjust("11 seconds") // past the near ttl, within the store's
      assertSome(yield* cache.get(0), new User({ id: 0, name: "a" }))
      assert.strictEqual(reads(), readsAfterMiss + 1)
      assert.strictEqual(yield* source.loads, 1)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("getMany fills the near cache and is answered by it, reading only the keys it lacks", () =>
    Effect.gen(function*() {
      const { store, reads } = yield* countingStore
      const source = yield* DataSource.memory<number, User>(rows(["a", "b", "c"]))
      const cache = yield* makeCache(source).pipe(Effect.provideService(CacheStore.CacheStore, store))
      yield* cache.getMany([0, 1])
      const before = reads()
      yield* cache.get(0)
      yield* cache.get(1)
      assert.strictEqual(reads(), before, "filled by getMany")
      const all = yield* cache.getMany([0, 1, 2, 0])
      deepStrictEqual(all.map((user) => Option.getOrThrow(user).name), ["a", "b", "c", "a"])
      assert.strictEqual(reads(), before + 1, "only key 2 was read")
      // two gets, and keys 0 and 1 of the getMany (a repeated key is one lookup)
      assert.strictEqual((yield* (yield* Metrics.Metrics).snapshot("near")).nearHits, 4)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("invalidate, set, invalidatePattern and invalidateAll evict this process's near cache before they return", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>(rows(["a", "b", "c"]))
      const cache = yield* makeCache(source)
      const name = (id: number) => Effect.map(cache.get(id), (user) => Option.getOrThrow(user).name)
      yield* cache.getMany([0, 1, 2])
      for (const id of [0, 1, 2]) yield* cache.get(id) // held by the near cache now
      yield* source.write(0, new User({ id: 0, name: "a2" }))
      yield* cache.invalidate(0)
      assert.strictEqual(yield* name(0), "a2")
      yield* cache.set(1, new User({ id: 1, name: "b2" }))
      assert.strictEqual(yield* name(1), "b2")
      yield* source.write(2, new User({ id: 2, name: "c2" }))
      yield* cache.invalidatePattern("2")
      assert.strictEqual(yield* name(2), "c2")
      yield* source.write(0, new User({ id: 0, name: "a3" }))
      yield* source.write(1, new User({ id: 1, name: "b3" }))
      yield* cache.invalidateAll
      assert.strictEqual(yield* name(0), "a3")
      assert.strictEqual(yield* name(1), "b3")
    }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.provide(Metrics.layer)))

  it.scoped("a read that ran while an invalidation was deleting does not survive it in the near cache", () =>
    Effect.gen(function*() {
      const inner = yield* MemoryCacheStore.make()
      const deleting = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const store = CacheStore.CacheStore.of({
        ...inner,
        delete: (keys) =>
          Effect.zipRight(Effect.zipRight(Deferred.succeed(deleting, void 0), Deferred.await(gate)), inner.delete(keys))
      })
      const source = yield* DataSource.memory<number, User>(rows(["a"]))
      const cache = yield* makeCache(source).pipe(Effect.provideService(CacheStore.CacheStore, store))
      yield* cache.get(0)
      yield* source.write(0, new User({ id: 0, name: "a2" }))
      const invalidating = yield* Effect.fork(cache.invalidate(0))
      yield* Deferred.await(deleting)
      // the store still holds the old entry: this read finds it (and may keep it until the delete ends)
      assert.strictEqual(Option.getOrThrow(yield* cache.get(0)).name, "a")
      yield* Deferred.succeed(gate, void 0)
      yield* Fiber.join(invalidating)
      assert.strictEqual(Option.getOrThrow(yield* cache.get(0)).name, "a2")
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("two instances on one store and bus: a write by one evicts the other's near cache", () =>
    Effect.gen(function*() {
      const hub = CacheBus.makeMemoryHub()
      const source = yield* DataSource.memory<number, User>(rows(["a"]))
      const a = yield* makeCache(source).pipe(Effect.provideService(CacheBus.CacheBus, hub.instance()))
      const b = yield* makeCache(source).pipe(Effect.provideService(CacheBus.CacheBus, hub.instance()))
      yield* a.get(0)
      yield* b.get(0)
      assert.strictEqual(Option.getOrThrow(yield* b.get(0)).name, "a") // b's near cache holds it
      yield* source.write(0, new User({ id: 0, name: "a2" }))
      yield* a.invalidate(0)
      assert.strictEqual(Option.getOrThrow(yield* b.get(0)).name, "a2")
      assert.strictEqual((yield* (yield* Metrics.Metrics).snapshot("near")).nearEvictions, 1)
    }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.provide(Metrics.layer)))

  it.scoped("a lost bus flushes and bypasses the near cache until it is back (counted)", () =>
    Effect.gen(function*() {
      const hub = CacheBus.makeMemoryHub()
      const { store, reads } = yield* countingStore
      const source = yield* DataSource.memory<number, User>(rows(["a"]))
      const cache = yield* makeCache(source).pipe(
        Effect.provideService(CacheBus.CacheBus, hub.instance()),
        Effect.provideService(CacheStore.CacheStore, store)
      )
      yield* cache.get(0)
      yield* cache.get(0)
      const before = reads()
      hub.setHealthy(false)
      yield* cache.get(0)
      yield* cache.get(0)
      assert.strictEqual(reads(), before + 2, "every get reads the store while the bus is down")
      hub.setHealthy(true)
      yield* cache.get(0) // refills from the store
      yield* cache.get(0)
      assert.strictEqual(reads(), before + 3)
      const snapshot = yield* (yield* Metrics.Metrics).snapshot("near")
      assert.strictEqual(snapshot.nearFlushes, 2)
      assert.strictEqual(snapshot.nearHits, 2)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("lookupConcurrency bounds the lookups running at once", () =>
    Effect.gen(function*() {
      let running = 0
      let most = 0
      const gate = yield* Deferred.make<void>()
      const cache = yield* CacheAside.make({
        namespace: "bounded",
        key: (id: number) => String(id),
        schema: User,
        lookup: (id: number) =>
          Effect.gen(function*() {
            running++
            most = Math.max(most, running)
            yield* Deferred.await(gate)
            running--
            return Option.some(new User({ id, name: "x" }))
          }),
        ttl: "1 minute",
        lookupConcurrency: 4
      })
      const fiber = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 50 }, (_, i) => i), cache.get, { concurrency: "unbounded" })
      )
      yield* Effect.yieldNow({ priority: 1000 })
      for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
      assert.strictEqual(running, 4)
      yield* Deferred.succeed(gate, void 0)
      const results = yield* Fiber.join(fiber)
      assert.strictEqual(results.filter(Option.isSome).length, 50)
      assert.strictEqual(most, 4)
    }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.provide(Metrics.layer)))

  it.scoped("invalid near cache options and lookupConcurrency are InvalidOptions", () =>
    Effect.gen(function*() {
      const source = yield* DataSource.memory<number, User>([])
      const errors = yield* Effect.all([
        Effect.flip(makeCache(source, { nearCache: { maxEntries: 0, ttl: "1 second" } })),
        Effect.flip(makeCache(source, { nearCache: { maxEntries: 10, ttl: 0 } })),
        Effect.flip(makeCache(source, { lookupConcurrency: 0 }))
      ])
      for (const error of errors) assert.strictEqual(error._tag, "InvalidOptions")
    }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.provide(Metrics.layer)))
})
