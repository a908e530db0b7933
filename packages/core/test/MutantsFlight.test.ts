/**
 * Flights (internal/flight.ts) through `getMany` and `get` on the memory store: a batch load is
 * interrupted only when every flight it serves has lost its last waiter, and a load that ends
 * without answering its flights (the cache's scope closing) still answers every one of them, so
 * no joiner hangs (see docs/mutation.md).
 */
import { assert, describe, it } from "@effect/vitest"
import { assertSome, assertTrue } from "@effect/vitest/utils"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

const Memory = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

/** Yields until `check` holds (a bounded number of times: never a wall-clock assertion). */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (check()) return
      yield* Effect.yieldNow()
    }
    assert.fail("the condition never held")
  })

/** A cache whose lookups wait at a gate; counts loads and interrupted loads per key. */
const gated = Effect.gen(function*() {
  const gate = yield* Deferred.make<void>()
  const loads = new Map<number, number>()
  const interrupted = new Map<number, number>()
  const bump = (map: Map<number, number>, id: number) => map.set(id, (map.get(id) ?? 0) + 1)
  const lookup = (id: number) =>
    Effect.sync(() => bump(loads, id)).pipe(
      Effect.zipRight(Deferred.await(gate)),
      Effect.as(Option.some(`v${id}`)),
      Effect.onInterrupt(() => Effect.sync(() => bump(interrupted, id)))
    )
  const open = Deferred.succeed(gate, undefined)
  return { loads, interrupted, lookup, open, count: (map: Map<number, number>, id: number) => map.get(id) ?? 0 }
})

const options = {
  namespace: "flights",
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

describe("flight: a batch load and its waiters", () => {
  it.scoped("when every waiter of one key leaves, the batch load goes on for the other key's joiner (one load each)", () =>
    Effect.gen(function*() {
      const { count, interrupted, loads, lookup, open } = yield* gated
      const cache = yield* CacheAside.make({ ...options, lookup })
      const batch = yield* Effect.fork(cache.getMany([1, 2]))
      yield* until(() => count(loads, 1) === 1 && count(loads, 2) === 1)
      const joiner = yield* Effect.fork(cache.get(2))
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(batch) // key 1 has no waiter left; key 2 still has the joiner
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow() // an interrupt of the load would land now
      assert.strictEqual(count(interrupted, 1) + count(interrupted, 2), 0)
      yield* open
      assertSome(yield* Fiber.join(joiner), "v2")
      assert.strictEqual(count(loads, 2), 1)
      assert.strictEqual(count(loads, 1), 1)
      assertSome(yield* cache.get(2), "v2")
      assert.strictEqual(count(loads, 2), 1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("when the waiters of every key leave, the batch load is interrupted", () =>
    Effect.gen(function*() {
      const { count, interrupted, loads, lookup } = yield* gated
      const cache = yield* CacheAside.make({ ...options, lookup })
      const batch = yield* Effect.fork(cache.getMany([1, 2]))
      yield* until(() => count(loads, 1) === 1 && count(loads, 2) === 1)
      const joiner = yield* Effect.fork(cache.get(2))
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(joiner) // key 2 keeps the batch's own waiter
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      assert.strictEqual(count(interrupted, 1) + count(interrupted, 2), 0)
      yield* Fiber.interrupt(batch) // now nobody waits for either key
      yield* until(() => count(interrupted, 1) === 1 && count(interrupted, 2) === 1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("a get's load is interrupted only when its last joiner has left", () =>
    Effect.gen(function*() {
      const { count, interrupted, loads, lookup, open } = yield* gated
      const cache = yield* CacheAside.make({ ...options, lookup })
      const leader = yield* Effect.fork(cache.get(1))
      yield* until(() => count(loads, 1) === 1)
      const joiner = yield* Effect.fork(cache.get(1))
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(leader)
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      assert.strictEqual(count(interrupted, 1), 0)
      yield* open
      assertSome(yield* Fiber.join(joiner), "v1")
      assert.strictEqual(count(loads, 1), 1)
    }).pipe(Effect.provide(Memory)))
})

describe("flight: a load that ends without answering", () => {
  it.effect("closing the cache's scope mid-load answers every flight of the batch: its joiners end, none hangs", () =>
    Effect.gen(function*() {
      const { count, interrupted, loads, lookup } = yield* gated
      const scope = yield* Scope.make()
      const cache = yield* Effect.provideService(CacheAside.make({ ...options, lookup }), Scope.Scope, scope)
      const batch = yield* Effect.fork(cache.getMany([1, 2]))
      yield* until(() => count(loads, 1) === 1 && count(loads, 2) === 1)
      const joiners = [yield* Effect.fork(cache.get(1)), yield* Effect.fork(cache.get(2))]
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      yield* Scope.close(scope, Exit.void)
      yield* until(() => count(interrupted, 1) === 1 && count(interrupted, 2) === 1)
      const polls: Array<() => Exit.Exit<unknown, unknown> | null> = [
        () => batch.unsafePoll(),
        ...joiners.map((fiber) => () => fiber.unsafePoll())
      ]
      for (const poll of polls) {
        yield* until(() => poll() !== null)
        assertTrue(Exit.isFailure(poll()!))
      }
    }).pipe(Effect.provide(Memory)))

  it.scoped("a batch whose lookup dies answers every flight with the defect", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({ ...options, lookup: (id: number) => Effect.dieMessage(`no ${id}`) })
      const exit = yield* Effect.exit(cache.getMany([1, 2]))
      assertTrue(Exit.isFailure(exit))
      const again = yield* Effect.exit(cache.get(1)) // the flight is gone: a new one, a new defect
      assertTrue(Exit.isFailure(again))
    }).pipe(Effect.provide(Memory)))
})
