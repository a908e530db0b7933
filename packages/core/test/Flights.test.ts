import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import {
  CacheAside,
  CacheStore,
  DataSource,
  FaultInjection,
  MemoryCacheStore,
  Metrics,
  PromiseCache
} from "../src/index.js"
import { implOf } from "../src/internal/cacheAside.js"

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)
const Faulty = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

/** A generous bound against hangs (never an assertion about speed). */
const hangBound = "3 seconds"
const bounded = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: hangBound, onTimeout: () => new Error(`hung past ${hangBound}`) })

/** A lookup that counts calls and interrupts, and waits for `gate` (when given) before answering. */
const gatedLookup = (gate?: Deferred.Deferred<void>) => {
  const counts = { calls: 0, interrupted: 0, started: Deferred.unsafeMake<void>(FiberId.none) }
  const lookup = (id: number) =>
    Effect.gen(function*() {
      counts.calls++
      yield* Deferred.succeed(counts.started, undefined)
      if (gate !== undefined) yield* Deferred.await(gate)
      return Option.some(`v${id}`)
    }).pipe(Effect.onInterrupt(() => Effect.sync(() => counts.interrupted++)))
  return { counts, lookup }
}

const makeCache = (lookup: (id: number) => Effect.Effect<Option.Option<string>>, namespace = "flights") =>
  CacheAside.make({ namespace, key: (id: number) => String(id), schema: Schema.String, lookup, ttl: "1 minute" })

describe("single flight", () => {
  it.scoped("a waiter's callback that throws does not keep the waiters after it from their answer", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const cache = yield* makeCache(lookup)
      const impl = implOf(cache)!
      const leader = yield* Effect.fork(cache.get(1))
      yield* Deferred.await(counts.started)
      const flight = impl.flights.get<string, never>(impl.keyOf(1))!
      const answered: Array<string> = []
      impl.flights.whenAnswered(flight, () => {
        throw new Error("a waiter that throws")
      })
      impl.flights.whenAnswered(flight, () => answered.push("second"))
      const joiner = yield* Effect.fork(cache.get(1))
      yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      assertSome(yield* bounded(Fiber.join(leader)), "v1")
      assertSome(yield* bounded(Fiber.join(joiner)), "v1")
      deepStrictEqual(answered, ["second"])
      assert.strictEqual(yield* FiberSet.size(impl.fibers), 0, "the load fiber left the cache's FiberSet")
    }).pipe(Effect.provide(Services)))

  it.scoped("an interrupted leader does not cancel the load its joiners wait for: one lookup answers them all", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const cache = yield* makeCache(lookup)
      const leader = yield* Effect.fork(cache.get(1))
      yield* Deferred.await(counts.started)
      const joiners = yield* Effect.forEach(Array.from({ length: 5 }), () => Effect.fork(cache.get(1)))
      const quitter = yield* Effect.fork(cache.get(1))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(quitter)
      yield* Fiber.interrupt(leader)
      yield* Deferred.succeed(gate, undefined)
      for (const joiner of joiners) assertSome(yield* Fiber.join(joiner), "v1")
      assert.strictEqual(counts.calls, 1, "the joiners shared the one load")
      assert.strictEqual(counts.interrupted, 0)
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("flights")).coalesced, 6)
    }).pipe(Effect.provide(Services)))

  it.scoped("when every waiter is interrupted the load is interrupted, and the next get starts afresh", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const cache = yield* makeCache(lookup)
      const waiters = yield* Effect.forEach(Array.from({ length: 3 }), () => Effect.fork(cache.get(1)))
      yield* Deferred.await(counts.started)
      yield* Effect.forEach(waiters, Fiber.interrupt)
      yield* Effect.yieldNow()
      assert.strictEqual(counts.interrupted, 1, "the shared load went with its last waiter")
      yield* Deferred.succeed(gate, undefined)
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(counts.calls, 2)
    }).pipe(Effect.provide(Services)))

  it.scoped("a leader interrupted during its store read: its joiners retry by themselves", () =>
    Effect.gen(function*() {
      const faults = yield* FaultInjection.FaultInjection
      const { counts, lookup } = gatedLookup()
      const cache = yield* makeCache(lookup)
      yield* faults.hang({ operations: ["get"] })
      const leader = yield* Effect.fork(cache.get(1))
      yield* Effect.yieldNow()
      const joiners = yield* Effect.forEach(Array.from({ length: 3 }), () => Effect.fork(cache.get(1)))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(leader)
      yield* faults.heal
      for (const joiner of joiners) assertSome(yield* Fiber.join(joiner), "v1")
      assert.strictEqual(counts.calls, 1, "the joiners retried as one new flight")
    }).pipe(Effect.provide(Faulty)))

  it.live(
    "an interrupt at any point of a get or getMany never leaves a flight or a lease behind",
    () =>
      Effect.gen(function*() {
        const store = yield* CacheStore.CacheStore
        const source = yield* DataSource.memory<number, string>([[1, "one"], [2, "two"], [3, "three"]])
        const cache = yield* CacheAside.make({
          namespace: "interrupts",
          key: (id: number) => String(id),
          schema: Schema.String,
          lookup: source,
          ttl: "1 minute",
          negativeTtl: 0 // nothing cached for "not found": every get of 4 leases, loads and releases
        })
        for (let yields = 0; yields < 60; yields++) {
          const fiber = yield* Effect.fork(yields % 2 === 0 ? cache.get(4) : Effect.asVoid(cache.getMany([4, 5, 4])))
          for (let i = 0; i < yields; i++) yield* Effect.yieldNow()
          yield* Fiber.interrupt(fiber)
          // the next gets of those keys answer (no flight left behind) and no lease outlived its holder
          const exit = yield* Effect.exit(bounded(Effect.all([cache.get(4), cache.getMany([5, 4])])))
          assert.isTrue(Exit.isSuccess(exit), `a get hung after an interrupt at yield ${yields}`)
          assert.isTrue(Option.isNone(yield* store.get(cache.keyOf(4))), `a lease of 4 left after yield ${yields}`)
          assert.isTrue(Option.isNone(yield* store.get(cache.keyOf(5))), `a lease of 5 left after yield ${yields}`)
        }
      }).pipe(Effect.provide(Services), Effect.scoped),
    60_000
  )
})

describe("a lookup that gets the key it is loading", () => {
  const isReentrant = (exit: Exit.Exit<unknown, unknown>) =>
    Exit.isFailure(exit) && Cause.isDie(exit.cause) &&
    String(Cause.squash(exit.cause)).includes("it would wait for itself forever")

  it.scoped("directly, through get, getMany, or another key's lookup: a defect, not a get waiting for itself forever", () =>
    Effect.gen(function*() {
      const ref: { cache?: CacheAside.CacheAside<number, string, never> } = {}
      // 1: gets itself; 2: gets 3, whose lookup gets 2; 4: getMany of itself; 5: gets 6 (no cycle)
      const lookup = (id: number): Effect.Effect<Option.Option<string>> =>
        Effect.suspend(() => {
          const self = ref.cache!
          switch (id) {
            case 1:
              return self.get(1)
            case 2:
              return self.get(3)
            case 3:
              return self.get(2)
            case 4:
              return Effect.map(self.getMany([6, 4]), (answers) => answers[1]!)
            case 5:
              return Effect.map(self.get(6), Option.map((six) => `5 after ${six}`))
            default:
              return Effect.succeed(Option.some(`v${id}`))
          }
        })
      const cache = ref.cache = yield* makeCache(lookup)
      const impl = implOf(cache)!
      for (const id of [1, 2, 3, 4]) {
        assert.isTrue(isReentrant(yield* bounded(Effect.exit(cache.get(id)))), `get(${id})`)
      }
      assertSome(yield* bounded(cache.get(5)), "5 after v6")
      assert.strictEqual(impl.flights.size, 0)
      const store = yield* CacheStore.CacheStore
      for (const id of [1, 2, 3, 4]) assertNone(yield* store.get(impl.keyOf(id))) // no lease left
    }).pipe(Effect.provide(Services)))

  it.live("through getMany's batch, and with a hard lookupTimeout (both run the lookup in a fiber of its own)", () =>
    Effect.gen(function*() {
      const selfGetting = (namespace: string, hard: boolean) => {
        const ref: { cache?: CacheAside.CacheAside<number, string, unknown> } = {}
        return Effect.map(
          CacheAside.make({
            namespace,
            key: (id: number) => String(id),
            schema: Schema.String,
            ttl: "1 minute",
            lookup: (id: number): Effect.Effect<Option.Option<string>, unknown> =>
              id === 1 ? ref.cache!.get(1) : Effect.succeed(Option.some(`v${id}`)),
            lookupTimeout: hard ? { hard: "30 seconds" } : {}
          }),
          (cache) => (ref.cache = cache)
        )
      }
      const many = yield* selfGetting("reentrant-many", false)
      assert.isTrue(isReentrant(yield* bounded(Effect.exit(many.getMany([1, 2])))), "getMany([1, 2])")
      assert.isTrue(isReentrant(yield* bounded(Effect.exit(many.getMany([1])))), "getMany([1])")
      const hard = yield* selfGetting("reentrant-hard", true)
      assert.isTrue(isReentrant(yield* bounded(Effect.exit(hard.get(1)))), "with a hard timeout")
    }).pipe(Effect.provide(Services), Effect.scoped))

  it.scoped("a get of a key whose flight a soft timeout already answered is no cycle: it does not wait", () =>
    Effect.gen(function*() {
      const ref: { cache?: CacheAside.CacheAside<number, string, unknown> } = {}
      const seen: Array<Exit.Exit<Option.Option<string>, unknown>> = []
      let loads = 0
      const cache = ref.cache = yield* CacheAside.make({
        namespace: "reentrant-soft",
        key: (id: number) => String(id),
        schema: Schema.String,
        ttl: "1 minute",
        failSafe: { maxStale: "10 minutes" },
        lookupTimeout: { soft: "100 millis" },
        lookup: (id: number) =>
          Effect.suspend(() => {
            const n = ++loads
            if (n === 1) return Effect.succeed(Option.some("v1"))
            // the reload outlives the soft timeout, which answers its flight with the stale value;
            // then it gets its own key: answered at once, nothing waits for this load
            return Effect.zipRight(
              Effect.sleep("200 millis"),
              Effect.map(Effect.exit(ref.cache!.get(id)), (exit) => (seen.push(exit), Option.some(`v${n}`)))
            )
          })
      })
      yield* cache.get(1)
      yield* TestClock.adjust("61 seconds")
      const first = yield* Effect.fork(cache.get(1))
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      yield* TestClock.adjust("100 millis")
      assertSome(yield* Fiber.join(first), "v1") // the stale value, at the soft timeout
      yield* TestClock.adjust("100 millis")
      for (let i = 0; i < 50 && seen.length === 0; i++) yield* Effect.yieldNow()
      deepStrictEqual(seen, [Exit.succeed(Option.some("v1"))])
    }).pipe(Effect.provide(Services)))

  it.scoped("after the scope closed, a joiner of a leader interrupted in its read gets again: a cached key answers", () =>
    Effect.gen(function*() {
      const faults = yield* FaultInjection.FaultInjection
      const inner = yield* Scope.make()
      const cache = yield* makeCache((id) => Effect.succeed(Option.some(`v${id}`)), "closed-read").pipe(
        Effect.provideService(Scope.Scope, inner)
      )
      yield* cache.set(1, "cached")
      yield* Scope.close(inner, Exit.void)
      assertSome(yield* cache.get(1), "cached")
      yield* faults.hang({ operations: ["getOrLease"] })
      const leader = yield* Effect.fork(cache.get(1)) // its read hangs
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      const joiner = yield* Effect.fork(cache.get(1))
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(leader) // its caller's own timeout, say: no load was ever started
      yield* faults.heal
      assertSome(yield* bounded(Fiber.join(joiner)), "cached")
    }).pipe(Effect.provide(Faulty)))

  it.scoped("through PromiseCache, from the lookup's own fiber: a rejection, not a promise that never settles", () =>
    Effect.gen(function*() {
      const ref: { users?: PromiseCache.PromiseCache<number, string, never> } = {}
      const cache = yield* makeCache((id) =>
        id === 1 ? Effect.promise(() => ref.users!.get(1)) : Effect.succeed(Option.some(`v${id}`))
      )
      const users = ref.users = PromiseCache.make(cache, yield* Effect.runtime<never>())
      const settled = yield* bounded(
        Effect.promise(() => users.get(1).then(() => "resolved", (e: unknown) => String(e)))
      )
      assert.include(settled, "it would wait for itself forever")
      assert.strictEqual(implOf(cache)!.flights.size, 0)
    }).pipe(Effect.provide(Services)))
})
