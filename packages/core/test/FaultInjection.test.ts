import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { CacheStore, FaultInjection, MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"

const bytes = (text: string) => new TextEncoder().encode(text)
const ttl = Duration.minutes(1)

const setup = Effect.gen(function*() {
  const memory = yield* MemoryCacheStore.make()
  const { control, store } = yield* FaultInjection.make(memory)
  return { memory, faults: control, store }
})

const injected = <A>(result: Either.Either<A, CacheStore.CacheUnavailable>) =>
  Either.isLeft(result) && result.left.cause instanceof FaultInjection.InjectedFault

describe("FaultInjection", () => {
  it.effect("passes operations through and counts them", () =>
    Effect.gen(function*() {
      const { faults, store } = yield* setup
      yield* store.set("k", bytes("v"), ttl)
      assertTrue(Option.isSome(yield* store.get("k")))
      yield* store.getMany(["k", "j"])
      yield* store.delete(["k"])
      yield* store.deletePattern("*")
      const counts = yield* faults.counts
      deepStrictEqual(
        [counts.set, counts.get, counts.getMany, counts.delete, counts.deletePattern, counts.total, counts.failed],
        [1, 1, 1, 1, 1, 5, 0]
      )
      yield* faults.resetCounts
      assert.strictEqual((yield* faults.counts).total, 0)
    }))

  it.effect("failNext(n) fails exactly the next n targeted operations", () =>
    Effect.gen(function*() {
      const { faults, memory, store } = yield* setup
      yield* faults.failNext(2, { operations: ["set"] })
      assert.isTrue(Either.isRight(yield* Effect.either(store.get("k"))), "not targeted")
      assert.isTrue(injected(yield* Effect.either(store.set("k", bytes("1"), ttl))))
      assert.isTrue(injected(yield* Effect.either(store.set("k", bytes("2"), ttl))))
      yield* store.set("k", bytes("3"), ttl)
      assertSome(Option.map(yield* memory.get("k"), (b) => new TextDecoder().decode(b)), "3")
      assert.strictEqual((yield* faults.counts).failed, 2)
    }))

  it.effect("failAll fails every operation until heal; a failed operation does not reach the store", () =>
    Effect.gen(function*() {
      const { faults, memory, store } = yield* setup
      yield* faults.failAll()
      const results = yield* Effect.forEach(
        Array.from({ length: 10 }),
        (_, i) => Effect.either(store.set(`k${i}`, bytes("v"), ttl))
      )
      assert.isTrue(results.every(injected))
      assertNone(yield* memory.get("k0"))
      yield* faults.heal
      yield* store.set("k0", bytes("v"), ttl)
      assertTrue(Option.isSome(yield* memory.get("k0")))
    }))

  it.effect("latency delays operations on the Clock", () =>
    Effect.gen(function*() {
      const { faults, store } = yield* setup
      yield* faults.latency("100 millis")
      const fiber = yield* Effect.fork(store.get("k"))
      yield* TestClock.adjust("99 millis")
      assertNone(yield* Fiber.poll(fiber))
      yield* TestClock.adjust("1 millis")
      assertNone(yield* Fiber.join(fiber))
    }))

  it.effect("hang holds operations until heal, then lets them reach the store (like SIGCONT)", () =>
    Effect.gen(function*() {
      const { faults, memory, store } = yield* setup
      yield* faults.hang({ operations: ["set"] })
      const fiber = yield* Effect.fork(store.set("k", bytes("v"), ttl))
      assert.isTrue(Either.isRight(yield* Effect.either(store.get("k"))), "gets are not held")
      yield* TestClock.adjust("1 hour")
      assertNone(yield* Fiber.poll(fiber)) // still held
      assert.strictEqual((yield* faults.counts).hung, 1)
      yield* faults.heal
      yield* Fiber.join(fiber)
      assertTrue(Option.isSome(yield* memory.get("k")))
    }))

  it.effect("layer provides the store and its control; ResilientCacheStore.layer keeps the control visible", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const faults = yield* FaultInjection.FaultInjection
      yield* faults.failNext(1)
      assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k"))))
      assert.isTrue(Either.isRight(yield* Effect.either(store.get("k"))))
      assert.strictEqual((yield* faults.counts).get, 2)
    }).pipe(
      Effect.provide(
        ResilientCacheStore.layer(FaultInjection.layer(MemoryCacheStore.layer())).pipe(Layer.provide(Metrics.layer))
      )
    ))
})
