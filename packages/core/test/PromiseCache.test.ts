/**
 * `PromiseCache`: a cache's methods as Promises. What it must keep of `runtime.runPromise(cache.get(k))`:
 * the same answers, the same rejections, the same counts; what it saves: the fiber of a get the
 * near cache answers or that joins a get in flight (counted with a `Supervisor` on the runtime).
 * Its joiners wait on a plain callback, so a property test interrupts the Effect gets around them
 * at random points, aborts some of its own, and invalidates keys meanwhile (no get answers a value
 * older than an invalidation that completed before it began).
 */
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
import * as ManagedRuntime from "effect/ManagedRuntime"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as Supervisor from "effect/Supervisor"
import { CacheAside, CacheStore, MemoryCacheStore, Metrics, PromiseCache } from "../src/index.js"
import { implOf } from "../src/internal/cacheAside.js"

class NotThere extends Schema.TaggedError<NotThere>()("NotThere", { id: Schema.Number }) {}

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

/** Counts the fibers started on a runtime. */
class Starts extends Supervisor.AbstractSupervisor<number> {
  started = 0
  get value() {
    return Effect.sync(() => this.started)
  }
  override onStart(): void {
    this.started++
  }
}

/** A lookup that counts its calls, waits for `gate` when given, and fails for negative ids. */
const gatedLookup = (gate?: Deferred.Deferred<void>) => {
  const counts = { calls: 0, started: Deferred.unsafeMake<void>(FiberId.none) }
  const lookup = (id: number) =>
    Effect.gen(function*() {
      counts.calls++
      yield* Deferred.succeed(counts.started, undefined)
      if (gate !== undefined) yield* Deferred.await(gate)
      if (id < 0) return yield* new NotThere({ id })
      return id === 0 ? Option.none() : Option.some(`v${id}`)
    })
  return { counts, lookup }
}

const makeCache = (
  lookup: (id: number) => Effect.Effect<Option.Option<string>, NotThere>,
  options: { readonly near?: boolean; readonly spanEveryGet?: boolean } = {}
) =>
  CacheAside.make({
    namespace: "promises",
    key: (id: number) => {
      if (Number.isNaN(id)) throw new Error("no key for NaN")
      return String(id)
    },
    schema: Schema.String,
    lookup,
    ttl: "1 minute",
    nearCache: options.near === true ? { maxEntries: 100, ttl: "1 minute" } : false,
    spanEveryGet: options.spanEveryGet === true
  })

/** The runtime of the test, with a supervisor counting the fibers it starts. */
const countingRuntime = Effect.gen(function*() {
  const starts = new Starts()
  const runtime = yield* Effect.supervised(Effect.runtime<never>(), starts)
  return { starts, runtime }
})

/** A cache on the memory store, its `PromiseCache` on the counting runtime, and that runtime. */
const promiseCacheOf = (
  lookup: (id: number) => Effect.Effect<Option.Option<string>, NotThere>,
  options: { readonly near?: boolean; readonly spanEveryGet?: boolean } = {}
) =>
  Effect.gen(function*() {
    const handle = yield* makeCache(lookup, options)
    const { runtime, starts } = yield* countingRuntime
    return { handle, cache: PromiseCache.make(handle, runtime), runtime, starts }
  })

/** The promise's outcome as an `Exit` (its handlers attached at once: a rejection is never unhandled). */
const settle = <A>(promise: Promise<A>) => {
  const settled = promise.then(Exit.succeed, (e: unknown) => Exit.fail(e))
  return Effect.promise(() => settled)
}

const causeOf = (rejection: unknown): Cause.Cause<unknown> => {
  assert.isTrue(Runtime.isFiberFailure(rejection), "rejected with a FiberFailure, as runPromise rejects")
  return (rejection as Runtime.FiberFailure)[Runtime.FiberFailureCauseId]
}

describe("PromiseCache", () => {
  it.scopedLive("answers what runPromise(cache.get) answers: a miss loads once, a hit, a cached not-found", () =>
    Effect.gen(function*() {
      const { counts, lookup } = gatedLookup()
      const { cache } = yield* promiseCacheOf(lookup)
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      assertNone(yield* Effect.promise(() => cache.get(0)))
      assertNone(yield* Effect.promise(() => cache.get(0)))
      assert.strictEqual(counts.calls, 2, "one lookup per key")
      deepStrictEqual(yield* Effect.promise(() => cache.getMany([1, 0, 2])), [
        Option.some("v1"),
        Option.none(),
        Option.some("v2")
      ])
      deepStrictEqual(yield* Effect.promise(() => cache.getOption(1)), Option.some(Option.some("v1")))
      yield* Effect.promise(() => cache.set(1, "w1"))
      assertSome(yield* Effect.promise(() => cache.get(1)), "w1")
      yield* Effect.promise(() => cache.invalidate(1))
      assertNone(yield* Effect.promise(() => cache.getOption(1)))
      assert.strictEqual(yield* Effect.promise(() => cache.invalidatePattern("*")), 2)
      yield* Effect.promise(() => cache.refresh(3))
      deepStrictEqual(yield* Effect.promise(() => cache.getOption(3)), Option.some(Option.some("v3")))
      assert.strictEqual(yield* Effect.promise(() => cache.invalidateAll()), 1)
    }).pipe(Effect.provide(Services)))

  it.scopedLive("a near-cache hit starts no fiber; a get the near cache cannot answer runs one", () =>
    Effect.gen(function*() {
      const { lookup } = gatedLookup()
      const { cache, starts } = yield* promiseCacheOf(lookup, { near: true })
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      const afterMiss = starts.started
      assert.isAbove(afterMiss, 0, "the miss ran as an effect")
      for (let i = 0; i < 100; i++) assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      assert.strictEqual(starts.started, afterMiss, "100 near hits, no fiber")
      const metrics = yield* Metrics.Metrics
      const snapshot = yield* metrics.snapshot("promises")
      assert.strictEqual(snapshot.nearHits, 100, "counted as near hits")
      assert.strictEqual(snapshot.hits, 100)
    }).pipe(Effect.provide(Services)))

  it.scopedLive("gets joining one in flight share its lookup, start no fiber, and are counted as coalesced", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const { cache, starts } = yield* promiseCacheOf(lookup)
      const leader = cache.get(7)
      yield* Deferred.await(counts.started)
      const before = starts.started
      const joiners = Array.from({ length: 50 }, () => cache.get(7))
      assert.strictEqual(starts.started, before, "50 joiners, no fiber")
      yield* Deferred.succeed(gate, undefined)
      for (const answer of yield* Effect.promise(() => Promise.all([leader, ...joiners]))) assertSome(answer, "v7")
      assert.strictEqual(counts.calls, 1)
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("promises")).coalesced, 50)
    }).pipe(Effect.provide(Services)))

  it.scopedLive("a promise joiner keeps the load of an interrupted Effect leader going: one lookup answers it", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const { cache, handle } = yield* promiseCacheOf(lookup)
      const leader = yield* Effect.fork(handle.get(4))
      yield* Deferred.await(counts.started)
      const joiner = cache.get(4)
      yield* Fiber.interrupt(leader)
      yield* Deferred.succeed(gate, undefined)
      assertSome(yield* Effect.promise(() => joiner), "v4")
      assert.strictEqual(counts.calls, 1, "the load went on for the joiner, not a second lookup")
    }).pipe(Effect.provide(Services)))

  it.scopedLive("a failed lookup rejects its joiners as runPromise rejects its leader: a FiberFailure of the same error", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const { cache, runtime } = yield* promiseCacheOf(lookup)
      const leader = settle(Runtime.runPromise(runtime, cache.cache.get(-1)))
      const leaderFiber = yield* Effect.fork(leader)
      yield* Deferred.await(counts.started)
      const joiner = settle(cache.get(-1))
      yield* Deferred.succeed(gate, undefined)
      const [led, joined] = [yield* Fiber.join(leaderFiber), yield* joiner]
      assert.isTrue(Exit.isFailure(led) && Exit.isFailure(joined))
      if (Exit.isSuccess(led) || Exit.isSuccess(joined)) return
      const expected = [new NotThere({ id: -1 })]
      deepStrictEqual(Array.from(Cause.failures(causeOf(Cause.squash(led.cause)))), expected)
      deepStrictEqual(Array.from(Cause.failures(causeOf(Cause.squash(joined.cause)))), expected)
      assert.strictEqual(counts.calls, 1, "the joiner shared the failed lookup")
    }).pipe(Effect.provide(Services)))

  it.scopedLive("a key function that throws rejects with the defect, as runPromise does; a signal interrupts", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const { cache } = yield* promiseCacheOf(lookup)
      const thrown = yield* settle(cache.get(Number.NaN))
      assert.isTrue(Exit.isFailure(thrown))
      if (Exit.isFailure(thrown)) {
        const defects = Array.from(Cause.defects(causeOf(Cause.squash(thrown.cause))))
        assert.strictEqual((defects[0] as Error).message, "no key for NaN")
      }
      const controller = new AbortController()
      const aborted = cache.get(5, { signal: controller.signal })
      yield* Deferred.await(counts.started)
      controller.abort()
      const exit = yield* settle(aborted)
      assert.isTrue(Exit.isFailure(exit) && Cause.isInterruptedOnly(causeOf(Cause.squash(exit.cause))))
      yield* Deferred.succeed(gate, undefined)
      assertSome(yield* Effect.promise(() => cache.get(5)), "v5")
      // a signal aborted before the call: interrupted as runPromise would, but nothing started
      const calls = counts.calls
      const preAborted: Array<Effect.Effect<Exit.Exit<unknown, unknown>>> = [
        settle(cache.get(6, { signal: AbortSignal.abort() })),
        settle(cache.set(7, "x", { signal: AbortSignal.abort() }))
      ]
      for (const call of preAborted) {
        const exit = yield* call
        assert.isTrue(Exit.isFailure(exit) && Cause.isInterruptedOnly(causeOf(Cause.squash(exit.cause))))
      }
      assert.strictEqual(counts.calls, calls, "no lookup started")
      assertNone(yield* Effect.promise(() => cache.getOption(7)))
    }).pipe(Effect.provide(Services)))

  it.scopedLive("with spanEveryGet every get runs as an effect (its span is wanted), near hits included", () =>
    Effect.gen(function*() {
      const { lookup } = gatedLookup()
      const { cache, starts } = yield* promiseCacheOf(lookup, { near: true, spanEveryGet: true })
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      const before = starts.started
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      assert.isAbove(starts.started, before)
    }).pipe(Effect.provide(Services)))

  it.live("runs on a ManagedRuntime's runtime", () =>
    Effect.gen(function*() {
      const managed = ManagedRuntime.make(Services)
      const { lookup } = gatedLookup()
      const scope = yield* Scope.make()
      const handle = yield* Effect.promise(() => managed.runPromise(Scope.extend(makeCache(lookup), scope)))
      const cache = PromiseCache.make(handle, yield* Effect.promise(() => managed.runtime()))
      assertSome(yield* Effect.promise(() => cache.get(2)), "v2")
      assertSome(yield* Effect.promise(() => cache.get(2)), "v2")
      yield* Scope.close(scope, Exit.void)
      yield* Effect.promise(() => managed.dispose())
    }))

  it.scopedLive("wrong arguments from a JavaScript caller: a typed InvalidOptions naming what to pass", () =>
    Effect.gen(function*() {
      const { lookup } = gatedLookup()
      const handle = yield* makeCache(lookup)
      const { runtime } = yield* countingRuntime
      const managed = ManagedRuntime.make(Services)
      const cases: ReadonlyArray<readonly [unknown, unknown, string]> = [
        [handle, undefined, "must be an Effect Runtime"],
        [handle, {}, "must be an Effect Runtime"],
        [handle, managed, "pass `await managedRuntime.runtime()`"],
        [handle, null, "must be an Effect Runtime"],
        [undefined, runtime, "must be a cache made by CacheAside.make"],
        [null, runtime, "must be a cache made by CacheAside.make"],
        [{ get: 1 }, runtime, "must be a cache made by CacheAside.make"]
      ]
      for (const [cache, given, message] of cases) {
        const thrown = yield* Effect.try(() =>
          PromiseCache.make(cache as CacheAside.CacheAside<number, string, never>, given as Runtime.Runtime<never>)
        ).pipe(Effect.flip)
        const error = thrown.error
        assert.instanceOf(error, CacheAside.InvalidOptions)
        assert.include((error as CacheAside.InvalidOptions).message, message)
      }
      yield* Effect.promise(() => managed.dispose())
    }).pipe(Effect.provide(Services)))

  it.scopedLive("a handle not made by CacheAside.make (a wrapper, a test double) runs every get as an effect", () =>
    Effect.gen(function*() {
      const { counts, lookup } = gatedLookup()
      const handle = yield* makeCache(lookup, { near: true })
      const { runtime, starts } = yield* countingRuntime
      const wrapped: CacheAside.CacheAside<number, string, NotThere> = { ...handle }
      const cache = PromiseCache.make(wrapped, runtime)
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      const before = starts.started
      assertSome(yield* Effect.promise(() => cache.get(1)), "v1")
      assert.isAbove(starts.started, before, "no fast path without the cache's internals")
      assert.strictEqual(counts.calls, 1)
    }).pipe(Effect.provide(Services)))

  it.scopedLive("a joiner whose leader's load is interrupted by its cache's scope closing is interrupted, not run again", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { counts, lookup } = gatedLookup(gate)
      const { runtime } = yield* countingRuntime
      const inner = yield* Scope.make()
      const handle = yield* makeCache(lookup).pipe(Effect.provideService(Scope.Scope, inner))
      const cache = PromiseCache.make(handle, runtime)
      const leader = settle(cache.get(3))
      yield* Deferred.await(counts.started)
      const joiner = settle(cache.get(3))
      yield* Scope.close(inner, Exit.void)
      // the load is interrupted: the leader is interrupted, and so is the joiner (never left hanging,
      // and no get run again: on a closed cache every load would be interrupted at its start)
      for (const exit of [yield* leader, yield* joiner]) {
        assert.isTrue(Exit.isFailure(exit) && Cause.isInterruptedOnly(causeOf(Cause.squash(exit.cause))))
      }
      assert.strictEqual(counts.calls, 1)
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("promises")).misses, 1, "the joiner did not run the get again")
    }).pipe(Effect.provide(Services)))

  it.scopedLive("closing a cache's scope with many gets waiting on one load: each is interrupted once, no get runs again", () =>
    Effect.gen(function*() {
      const { counts, lookup } = gatedLookup(yield* Deferred.make<void>()) // never opened
      const { runtime } = yield* countingRuntime
      const inner = yield* Scope.make()
      const handle = yield* makeCache(lookup).pipe(Effect.provideService(Scope.Scope, inner))
      const cache = PromiseCache.make(handle, runtime)
      const effects = yield* Effect.forEach(Array.from({ length: 100 }), () => Effect.fork(handle.get(5)))
      yield* Deferred.await(counts.started)
      const promises = Array.from({ length: 100 }, () => settle(cache.get(5)))
      yield* Scope.close(inner, Exit.void)
      for (const exit of yield* Effect.forEach(effects, Fiber.await)) assert.isTrue(Exit.isInterrupted(exit))
      for (const exit of yield* Effect.all(promises)) {
        assert.isTrue(Exit.isFailure(exit) && Cause.isInterruptedOnly(causeOf(Cause.squash(exit.cause))))
      }
      // each round of gets run again would lead a new flight (a store read, a lease) that the closed
      // cache interrupts at once, answering only that round's leader: N waiters, N rounds
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("promises")).misses, 1)
      assert.strictEqual(counts.calls, 1)
    }).pipe(Effect.provide(Services)))

  it.scopedLive("an error runPromise cannot render (a bigint in it) rejects every joiner as it rejects its leader; none hangs", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const { runtime } = yield* countingRuntime
      const failing = yield* CacheAside.make({
        namespace: "unrenderable",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: () => Effect.zipRight(Deferred.await(gate), Effect.fail({ _tag: "NotFound" as const, id: 5n })),
        ttl: "1 minute"
      })
      const cache = PromiseCache.make(failing, runtime)
      const leader = settle(cache.get(1))
      yield* Effect.sleep("10 millis")
      const joiners = Array.from({ length: 20 }, () => settle(cache.get(1)))
      const effectJoiner = yield* Effect.fork(failing.get(1))
      yield* Deferred.succeed(gate, undefined)
      const all = yield* Effect.all([leader, ...joiners]).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "a promise get hangs" })
      )
      // runPromise rejects with what building its FiberFailure threw (JSON has no bigint): so do they
      for (const exit of all) assert.isTrue(Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof TypeError)
      const joined = yield* Fiber.await(effectJoiner).pipe(
        Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => "the Effect joiner hangs" })
      )
      deepStrictEqual(joined, Exit.fail({ _tag: "NotFound" as const, id: 5n }))
      assert.strictEqual(implOf(failing)!.flights.size, 0)
      assert.strictEqual(yield* FiberSet.size(implOf(failing)!.fibers), 0, "no load fiber left")
    }).pipe(Effect.provide(Services)))
})

// ---------------------------------------------------------------------------------------------
// random interleavings

const Key = Schema.Int.pipe(Schema.between(1, 3))
const Op = Schema.Union(
  Schema.TaggedStruct("promiseGet", { key: Key, abortAfter: Schema.optional(Schema.Int.pipe(Schema.between(0, 20))) }),
  Schema.TaggedStruct("effectGet", {
    key: Key,
    interruptAfter: Schema.optional(Schema.Int.pipe(Schema.between(0, 20)))
  }),
  Schema.TaggedStruct("invalidate", { key: Key }),
  Schema.TaggedStruct("lookupsTake", { millis: Schema.Int.pipe(Schema.between(0, 15)) }),
  Schema.TaggedStruct("pause", { millis: Schema.Int.pipe(Schema.between(0, 10)) })
)

describe("PromiseCache under random interleavings", () => {
  for (const near of [false, true]) {
    it.scopedLive.prop(
      `every promise get settles with the lookup's value, none older than an invalidation completed before it began (or, aborted, an interrupt), and no flight, fiber or lease is left (near cache ${
        near ? "on" : "off"
      })`,
      [Schema.Array(Op).pipe(Schema.minItems(1), Schema.maxItems(25))],
      ([ops]) =>
        Effect.gen(function*() {
          let delay = 0
          // a value carries the version of its key when its lookup began; an invalidation bumps the
          // version first (the write it follows), and records it as completed when it returns
          const version = [0, 0, 0, 0]
          const completed = [0, 0, 0, 0]
          const lookup = (id: number) =>
            Effect.suspend(() => {
              const seen = version[id]!
              return Effect.as(Effect.sleep(delay), Option.some(`v${id}:${seen}`))
            })
          const { cache, handle } = yield* promiseCacheOf(lookup, { near })
          const settled: Array<Effect.Effect<void>> = []
          const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
          for (const op of ops) {
            switch (op._tag) {
              case "promiseGet": {
                const controller = op.abortAfter === undefined ? undefined : new AbortController()
                if (controller !== undefined) setTimeout(() => controller.abort(), op.abortAfter)
                const floor = completed[op.key]!
                const answer = settle(cache.get(op.key, { signal: controller?.signal }))
                settled.push(Effect.map(answer, (exit) => {
                  if (Exit.isSuccess(exit)) {
                    assert.isTrue(Option.isSome(exit.value), "a value")
                    const [name, seen] = Option.getOrThrow(exit.value).split(":")
                    assert.strictEqual(name, `v${op.key}`)
                    assert.isAtLeast(
                      Number(seen),
                      floor,
                      "no value older than an invalidation completed before the get"
                    )
                    return
                  }
                  assert.isDefined(controller, "only an aborted get may reject")
                  assert.isTrue(Cause.isInterruptedOnly(causeOf(Cause.squash(exit.cause))))
                }))
                break
              }
              case "effectGet": {
                const fiber = yield* Effect.fork(Effect.asVoid(handle.get(op.key)))
                if (op.interruptAfter !== undefined) {
                  fibers.push(yield* Effect.fork(Effect.delay(Fiber.interrupt(fiber), op.interruptAfter)))
                }
                fibers.push(fiber)
                break
              }
              case "invalidate": {
                const bumped = ++version[op.key]!
                fibers.push(
                  yield* Effect.fork(Effect.tap(handle.invalidate(op.key), () => {
                    completed[op.key] = Math.max(completed[op.key]!, bumped)
                  }))
                )
                break
              }
              case "lookupsTake":
                delay = op.millis
                break
              case "pause":
                yield* Effect.sleep(op.millis)
            }
          }
          yield* Effect.timeoutFail(Effect.all(settled, { discard: true }), {
            duration: "3 seconds",
            onTimeout: () => new Error("a promise get never settled")
          })
          yield* Effect.forEach(fibers, (fiber) => Effect.exit(Fiber.join(fiber)), { discard: true })
          const impl = implOf(handle)!
          let left = impl.flights.size + (yield* FiberSet.size(impl.fibers))
          for (let i = 0; i < 200 && left > 0; i++) {
            yield* Effect.sleep("5 millis")
            left = impl.flights.size + (yield* FiberSet.size(impl.fibers))
          }
          assert.strictEqual(left, 0, "no flight or background fiber outlived the run")
          const store = yield* CacheStore.CacheStore
          for (let k = 1; k <= 3; k++) {
            const held = yield* Effect.orDie(store.get(handle.keyOf(k)))
            assert.isFalse(Option.isSome(held) && held.value[0] === 0, `a lease of ${k} outlived its holder`)
          }
        }).pipe(Effect.provide(Services)),
      {
        fastCheck: {
          numRuns: 100,
          // always tried: an invalidation lands in the middle of a load that promise gets wait
          // for, and a promise get follows it; and one lands on a cached value (in the near cache
          // when it is on), and a promise get follows it
          examples: [
            [[
              { _tag: "lookupsTake", millis: 15 },
              { _tag: "promiseGet", key: 1 },
              { _tag: "pause", millis: 5 },
              { _tag: "invalidate", key: 1 },
              { _tag: "pause", millis: 2 },
              { _tag: "promiseGet", key: 1 },
              { _tag: "effectGet", key: 1 }
            ]],
            [[
              { _tag: "promiseGet", key: 2 },
              { _tag: "pause", millis: 10 },
              { _tag: "invalidate", key: 2 },
              { _tag: "pause", millis: 2 },
              { _tag: "promiseGet", key: 2 }
            ]]
          ]
        },
        timeout: 120_000
      }
    )
  }
})
