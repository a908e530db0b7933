/**
 * The lease (internal/lease.ts) through `CacheAside.get` on the memory store, counting store calls
 * with the fault-injection wrapper: consumed by a fill (no release after it), released after a fill
 * that did not happen or was refused, and a store failure while taking it (see docs/mutation.md).
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheStore, Codec, FaultInjection, MemoryCacheStore, Metrics } from "../src/index.js"
import { implOf } from "../src/internal/cacheAside.js"

const Faulty = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

const base = {
  namespace: "lease",
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

const setup = (
  lookup: (id: number) => Effect.Effect<Option.Option<string>>,
  options: {
    readonly negativeTtl?: Duration.DurationInput
    readonly lock?: { readonly wait: Duration.DurationInput; readonly poll: Duration.DurationInput }
  } = {}
) =>
  Effect.gen(function*() {
    const store = yield* CacheStore.CacheStore
    const faults = yield* FaultInjection.FaultInjection
    const metrics = yield* Metrics.Metrics
    let loads = 0
    const cache = yield* CacheAside.make({
      ...base,
      ...options,
      lookup: (id: number) => Effect.suspend(() => (loads++, lookup(id)))
    })
    yield* faults.resetCounts
    return { store, faults, cache, loads: () => loads, stats: () => metrics.snapshot("lease") }
  })

describe("lease: consumed by the fill, released on every other exit", () => {
  it.scoped("a filled miss takes the lease, fills over it and releases nothing; the next get is a hit", () =>
    Effect.gen(function*() {
      const { cache, faults, loads, store } = yield* setup((id) => Effect.succeed(Option.some(`v${id}`)))
      assertSome(yield* cache.get(1), "v1")
      const counts = yield* faults.counts
      assert.strictEqual(counts.getOrLease, 1, "the lease is taken by the read itself")
      assert.strictEqual(counts.setIfAbsent, 0)
      assert.strictEqual(counts.compareAndSet, 1)
      assert.strictEqual(counts.compareAndDelete, 0)
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(loads(), 1)
      assert.isTrue(Option.isSome(yield* store.get(cache.keyOf(1))))
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a value that must not be cached (not found, negativeTtl 0): the lease is released, the key left empty", () =>
    Effect.gen(function*() {
      const { cache, faults, loads, store } = yield* setup(() => Effect.succeed(Option.none()), {
        negativeTtl: "0 millis"
      })
      assertNone(yield* cache.get(1))
      const counts = yield* faults.counts
      assert.strictEqual(counts.getOrLease, 1)
      assert.strictEqual(counts.compareAndSet, 0)
      assert.strictEqual(counts.compareAndDelete, 1)
      assertNone(yield* store.get(cache.keyOf(1)))
      assertNone(yield* cache.get(1)) // and the next get loads again at once, nobody waits on a lease
      assert.strictEqual(loads(), 2)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a fill refused (another loader's lease replaced ours meanwhile): ours is released, theirs left alone", () =>
    Effect.gen(function*() {
      const other = Codec.lease("another process")
      const during = { load: Effect.void as Effect.Effect<void> }
      const { cache, faults, stats, store } = yield* setup((id) => Effect.as(during.load, Option.some(`v${id}`)))
      during.load = Effect.orDie(store.set(cache.keyOf(1), other, Duration.minutes(1)))
      assertSome(yield* cache.get(1), "v1")
      const counts = yield* faults.counts
      assert.strictEqual(counts.compareAndSet, 1)
      assert.strictEqual(counts.compareAndDelete, 1)
      assert.strictEqual((yield* stats()).leaseRejected, 1)
      deepStrictEqual(yield* store.get(cache.keyOf(1)), Option.some(other))
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a failed lookup releases the lease", () =>
    Effect.gen(function*() {
      const { cache, faults, store } = yield* setup(() => Effect.die("database down"))
      const exit = yield* Effect.exit(cache.get(1))
      assert.isTrue(exit._tag === "Failure")
      assert.strictEqual((yield* faults.counts).compareAndDelete, 1)
      assertNone(yield* store.get(cache.keyOf(1)))
    }).pipe(Effect.provide(Faulty)))

  it.scoped("corrupt bytes are taken over by compare-and-set into the lease, then filled: nothing released", () =>
    Effect.gen(function*() {
      const { cache, faults, loads, store } = yield* setup((id) => Effect.succeed(Option.some(`v${id}`)))
      yield* store.set(cache.keyOf(1), new Uint8Array([0xff, 1, 2, 3]), Duration.minutes(1))
      yield* faults.resetCounts
      assertSome(yield* cache.get(1), "v1")
      const counts = yield* faults.counts
      assert.strictEqual(counts.setIfAbsent, 0)
      assert.strictEqual(counts.compareAndSet, 2)
      assert.strictEqual(counts.compareAndDelete, 0)
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(loads(), 1)
    }).pipe(Effect.provide(Faulty)))
})

describe("lease: the store failing while it is taken", () => {
  it.scoped("a get whose lease-read fails answers from the lookup, once, counted as a fallback, and fills nothing", () =>
    Effect.gen(function*() {
      const { cache, faults, loads, stats, store } = yield* setup((id) => Effect.succeed(Option.some(`v${id}`)))
      yield* faults.failNext(1, { operations: ["getOrLease"] })
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(loads(), 1)
      yield* FiberSet.awaitEmpty(implOf(cache)!.fibers)
      const counts = yield* faults.counts
      assert.strictEqual(counts.getOrLease, 1)
      assert.strictEqual(counts.setIfAbsent, 0)
      assert.strictEqual(counts.compareAndSet, 0)
      // no answer (not `replied`): the lease-read may have written the lease, released in the background
      assert.strictEqual(counts.compareAndDelete, 1)
      assert.strictEqual((yield* stats()).fallbacks, 1)
      assertNone(yield* store.get(cache.keyOf(1)))
    }).pipe(Effect.provide(Faulty)))

  it.scoped("a lock waiter whose setIfAbsent fails (the holder's lease went) answers from the lookup, counted as a write error, and fills nothing", () =>
    Effect.gen(function*() {
      const { cache, faults, loads, stats, store } = yield* setup(
        (id) => Effect.succeed(Option.some(`v${id}`)),
        { lock: { wait: "5 seconds", poll: "20 millis" } }
      )
      const full = cache.keyOf(1)
      yield* store.set(full, Codec.lease("another process"), Duration.minutes(1))
      yield* faults.failNext(1, { operations: ["setIfAbsent"] })
      const waiter = yield* Effect.fork(cache.get(1))
      yield* TestClock.adjust("1 millis")
      yield* store.delete([full]) // the holder released its lease: the waiter asks for one, which fails
      yield* TestClock.adjust("20 millis")
      assertSome(yield* Fiber.join(waiter), "v1")
      assert.strictEqual(loads(), 1)
      yield* FiberSet.awaitEmpty(implOf(cache)!.fibers)
      const counts = yield* faults.counts
      assert.strictEqual(counts.setIfAbsent, 1)
      assert.strictEqual(counts.compareAndSet, 0)
      // no answer (not `replied`): the setIfAbsent may have written the lease, released in the background
      assert.strictEqual(counts.compareAndDelete, 1)
      assert.strictEqual((yield* stats()).writeErrors, 1)
      assertNone(yield* store.get(full))
    }).pipe(Effect.provide(Faulty)))
})
