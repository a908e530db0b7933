/**
 * A lease write whose outcome is unknown is released. A lease-read (`getOrLease`) or a lease take
 * (`setIfAbsent`, or `compareAndSet` over dead bytes) that fails without an answer from the store
 * (a client-side timeout, a connection cut after the command was sent) may have written the lease:
 * left there, it would hold every other process's get of the key in the lock for `leaseTtl`. The
 * store here is the real memory store whose lease writes run and THEN fail, as such a command does.
 *
 * Counted: the lease left under the key, the compare-and-deletes sent, and another process's lock
 * waits. An error reply (`replied`: nothing written) and a circuit breaker's refusal (nothing sent)
 * release nothing.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheStore, Codec, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"
import { implOf } from "../src/internal/cacheAside.js"
import { resilientOverMemory } from "./utils/resilient.js"

type Store = CacheStore.CacheStore["Type"]
type Operation = CacheStore.Operation

/**
 * `inner` with every call counted; an armed operation runs on `inner` and then fails, its answer
 * lost (a timeout: not `replied`), or with `replied: true` when asked (which a real store only says
 * when nothing was written: here it shows that such an error releases nothing).
 */
const lossy = (inner: Store) => {
  const counts = Object.fromEntries(CacheStore.operations.map((operation) => [operation, 0])) as Record<
    Operation,
    number
  >
  const armed = new Map<Operation, number>()
  let replied = false
  const store = CacheStore.mapOperations(inner, (operation, effect) =>
    Effect.suspend(() => {
      counts[operation]++
      const left = armed.get(operation) ?? 0
      if (left === 0) return effect
      armed.set(operation, left - 1)
      const error = new CacheStore.CacheUnavailable({
        operation,
        cause: new Cause.TimeoutException(`${operation}: the answer was lost`),
        ...(replied ? { replied: true } : {})
      })
      return Effect.zipRight(effect, Effect.fail(error))
    }))
  return {
    store,
    counts,
    /** The next `n` calls of `operation` run, then fail. */
    lose: (operation: Operation, n = 1, options: { readonly replied?: boolean } = {}) => {
      armed.set(operation, n)
      replied = options.replied === true
    },
    reset: () => {
      for (const operation of CacheStore.operations) counts[operation] = 0
    }
  }
}

const namespace = "ambiguous"

const options = {
  namespace,
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

/** A cache on `store` with its own metrics (one process), counting its loads. */
const processOn = (store: Store, extra: { readonly staleWhileRevalidate?: Duration.DurationInput } = {}) =>
  Effect.gen(function*() {
    let loads = 0
    const metrics = yield* Metrics.make
    const load = (id: number) => Effect.sync(() => (loads++, Option.some(`v${id}`)))
    const cache = yield* CacheAside.make({
      ...options,
      ...extra,
      lookup: DataSource.make(load, (ids) => Effect.forEach(ids, (id) => Effect.map(load(id), (v) => [id, v] as const)))
    }).pipe(Effect.provideService(CacheStore.CacheStore, store), Effect.provideService(Metrics.Metrics, metrics))
    return {
      cache,
      loads: () => loads,
      stats: metrics.snapshot(namespace),
      /** Waits for the cache's background work (releases, refreshes) to end. */
      settled: FiberSet.awaitEmpty(implOf(cache)!.fibers)
    }
  })

const setup = Effect.gen(function*() {
  const memory = yield* MemoryCacheStore.make()
  const faulty = lossy(memory)
  const here = yield* processOn(faulty.store)
  return { memory, faulty, here }
})

/** Another process's get of `id`, on the memory store itself: it must not wait in the lock. */
const otherProcessGets = (memory: Store, ids: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const there = yield* processOn(memory)
    const fiber = yield* Effect.fork(there.cache.getMany(ids))
    yield* TestClock.adjust("10 seconds") // past the lock's wait: a waiter would time out and load
    deepStrictEqual(yield* Fiber.join(fiber), ids.map((id) => Option.some(`v${id}`)))
    const stats = yield* there.stats
    assert.strictEqual(stats.lockWaits, 0, "another process waited on a lease nobody fills")
    assert.strictEqual(there.loads(), ids.length)
  })

describe("a lease write without an answer is released in the background", () => {
  it.scoped("a get's lease-read (getOrLease) that wrote the lease and lost the answer", () =>
    Effect.gen(function*() {
      const { faulty, here, memory } = yield* setup
      faulty.lose("getOrLease")
      assertSome(yield* here.cache.get(1), "v1") // served from the lookup
      yield* here.settled
      assert.strictEqual(faulty.counts.getOrLease, 1)
      assert.strictEqual(faulty.counts.compareAndDelete, 1)
      assertNone(yield* memory.get(here.cache.keyOf(1)))
      assert.strictEqual((yield* here.stats).fallbacks, 1)
      yield* otherProcessGets(memory, [1])
    }))

  it.scoped("a lock waiter's setIfAbsent (Lease.acquire) that wrote the lease and lost the answer", () =>
    Effect.gen(function*() {
      const { faulty, here, memory } = yield* setup
      const full = here.cache.keyOf(1)
      yield* memory.set(full, Codec.lease("another process"), Duration.minutes(1))
      faulty.lose("setIfAbsent")
      const waiter = yield* Effect.fork(here.cache.get(1))
      yield* TestClock.adjust("1 millis")
      yield* memory.delete([full]) // the holder released its lease: the waiter takes one
      yield* TestClock.adjust("20 millis")
      assertSome(yield* Fiber.join(waiter), "v1")
      yield* here.settled
      assert.strictEqual(faulty.counts.setIfAbsent, 1)
      assert.strictEqual(faulty.counts.compareAndDelete, 1)
      assert.strictEqual(faulty.counts.compareAndSet, 0, "nothing filled")
      assertNone(yield* memory.get(full))
      yield* otherProcessGets(memory, [1])
    }))

  it.scoped("a compare-and-set of corrupt bytes into the lease (Lease.acquire) that wrote it and lost the answer", () =>
    Effect.gen(function*() {
      const { faulty, here, memory } = yield* setup
      const full = here.cache.keyOf(1)
      yield* memory.set(full, new Uint8Array([0xff, 1, 2, 3]), Duration.minutes(1))
      faulty.lose("compareAndSet")
      assertSome(yield* here.cache.get(1), "v1")
      yield* here.settled
      assert.strictEqual(faulty.counts.compareAndSet, 1, "the take-over; no fill after it")
      assert.strictEqual(faulty.counts.compareAndDelete, 1)
      assertNone(yield* memory.get(full))
      yield* otherProcessGets(memory, [1])
    }))

  it.scoped("getMany's batched lease-reads that wrote their leases and lost the answers", () =>
    Effect.gen(function*() {
      const { faulty, here, memory } = yield* setup
      faulty.lose("getOrLease", 3)
      deepStrictEqual(yield* here.cache.getMany([1, 2, 3]), [Option.some("v1"), Option.some("v2"), Option.some("v3")])
      yield* here.settled
      assert.strictEqual(faulty.counts.getMany, 1)
      assert.strictEqual(faulty.counts.getOrLease, 3)
      assert.strictEqual(faulty.counts.compareAndDelete, 3)
      assert.strictEqual(faulty.counts.compareAndSet, 0, "nothing filled")
      for (const id of [1, 2, 3]) assertNone(yield* memory.get(here.cache.keyOf(id)))
      yield* otherProcessGets(memory, [1, 2, 3])
    }))

  it.scoped("a background refresh's hint lease (Lease.use) that was written and lost its answer", () =>
    Effect.gen(function*() {
      const memory = yield* MemoryCacheStore.make()
      const faulty = lossy(memory)
      const here = yield* processOn(faulty.store, { staleWhileRevalidate: "1 minute" })
      assertSome(yield* here.cache.get(1), "v1")
      yield* TestClock.adjust("61 seconds") // stale: served, refreshed in the background
      faulty.reset()
      faulty.lose("setIfAbsent")
      assertSome(yield* here.cache.get(1), "v1")
      yield* here.settled
      assert.strictEqual(faulty.counts.setIfAbsent, 1)
      assert.strictEqual(faulty.counts.compareAndDelete, 1)
      const hint = implOf(here.cache)!.keys.hint(here.cache.keyOf(1))
      assertNone(yield* memory.get(hint))
    }))
})

describe("a lease write that surely wrote nothing releases nothing", () => {
  it.scoped("an error reply (replied: true): no compare-and-delete is sent", () =>
    Effect.gen(function*() {
      const { faulty, here, memory } = yield* setup
      faulty.lose("getOrLease", 1, { replied: true })
      assertSome(yield* here.cache.get(1), "v1")
      yield* here.settled
      assert.strictEqual(faulty.counts.getOrLease, 1)
      assert.strictEqual(faulty.counts.compareAndDelete, 0)
      // (this store wrote the lease although it said it answered: a real one would not have)
      assertTrue(Option.isSome(yield* memory.get(here.cache.keyOf(1))))
    }))

  it.scoped("a circuit breaker's refusal: no compare-and-delete is sent, nor refused by the breaker", () =>
    Effect.gen(function*() {
      const { faults, stats, store: resilient } = yield* resilientOverMemory({ failureThreshold: 1 })
      const outer = lossy(resilient) // counts what the cache asks of the resilient store
      yield* faults.failAll()
      assertTrue((yield* Effect.either(resilient.get("any")))._tag === "Left")
      assert.strictEqual((yield* stats).breaker, "open")
      const here = yield* processOn(outer.store)
      assertSome(yield* here.cache.get(1), "v1")
      yield* here.settled
      assert.strictEqual(outer.counts.getOrLease, 1)
      assert.strictEqual(outer.counts.compareAndDelete, 0)
      assert.strictEqual((yield* stats).rejected, 1, "only the lease-read was refused")
    }).pipe(Effect.provide(Metrics.layer)))
})
