/**
 * Survivors of `internal/resilientStore.ts` (see docs/mutation.md), through `ResilientCacheStore`
 * over a memory store with fault injection: how many attempts a retry policy makes, the fast path
 * of a store that enforces its own timeout (it must still apply queued invalidations and respect
 * the open breaker), one rejection per refused call, a failed pattern replay failing the read that
 * waits for it, an empty `getMany` that never reaches the store, and the store's name on its logs.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import * as TestClock from "effect/TestClock"
import { CacheStore, FaultInjection, Metrics, ResilientCacheStore } from "../src/index.js"
import { resilientOverMemory } from "./utils/resilient.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bytes = (text: string) => encoder.encode(text)
const text = (value: Option.Option<Uint8Array>) => Option.map(value, (b) => decoder.decode(b))
const ttl = Duration.hours(1)

/** memory ← fault injection ← resilient store; retries off, no jitter (test/utils/resilient.ts). */
const setup = (options: ResilientCacheStore.Options = {}) => resilientOverMemory(options)

const errorOf = <A>(exit: Exit.Exit<A, CacheStore.CacheUnavailable>): CacheStore.CacheUnavailable => {
  if (Exit.isSuccess(exit)) return assert.fail("the call succeeded")
  const failure = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  if (failure === undefined) return assert.fail(`not a failure: ${exit.cause._tag}`)
  return failure
}

/** Log lines with their annotations, at every level. */
const capture = () => {
  const lines: Array<{ readonly message: string; readonly store: Option.Option<unknown> }> = []
  const logger = Logger.make(({ annotations, message }) => {
    lines.push({
      message: Array.isArray(message) ? message.join(" ") : String(message),
      store: HashMap.get(annotations, "store")
    })
  })
  return {
    lines,
    around: <A, E, R>(effect: Effect.Effect<A, E, R>) =>
      effect.pipe(
        Effect.provide(Logger.replace(Logger.defaultLogger, logger)),
        Logger.withMinimumLogLevel(LogLevel.All)
      )
  }
}

describe("a retry policy", () => {
  it.scoped("recurs(2) makes three attempts in all: the first failure counts against the schedule", () =>
    Effect.gen(function*() {
      const { faults, memory, stats, store } = yield* setup({ writeRetry: Schedule.recurs(2) })
      yield* faults.failAll({ operations: ["set"] })
      assert.isTrue(Either.isLeft(yield* Effect.either(store.set("k", bytes("v"), ttl))))
      assert.strictEqual((yield* faults.counts).set, 3)
      const s = yield* stats
      assert.strictEqual(s.retries, 2)
      assert.strictEqual(s.droppedWrites, 1)
      yield* faults.heal
      yield* faults.resetCounts
      yield* faults.failNext(1, { operations: ["set"] })
      yield* store.set("k", bytes("v"), ttl)
      assert.strictEqual((yield* faults.counts).set, 2)
      assert.strictEqual((yield* stats).retries, 3)
      assertSome(text(yield* memory.get("k")), "v")
    }).pipe(Effect.provide(Metrics.layer)))
})

describe("storeEnforcesTimeout: the fast path of get and getOrLease", () => {
  it.scoped("still deletes a queued key before reading it", () =>
    Effect.gen(function*() {
      const { faults, memory, store } = yield* setup({ storeEnforcesTimeout: true, failureThreshold: 100 })
      yield* memory.set("a", bytes("old"), ttl)
      yield* memory.set("b", bytes("old"), ttl)
      yield* faults.failAll()
      assert.strictEqual(yield* store.delete(["a", "b"]), 0) // queued
      yield* faults.heal
      assertNone(yield* store.get("a"))
      assertNone(yield* memory.get("a"))
      const leased = yield* store.getOrLease("b", bytes("\u0000lease"), ttl)
      assert.isTrue(Option.isNone(leased), "the queued key was deleted first, then leased")
      assertSome(text(yield* memory.get("b")), "\u0000lease")
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("an open breaker refuses it without reaching the store", () =>
    Effect.gen(function*() {
      const { faults, stats, store } = yield* setup({ storeEnforcesTimeout: true, failureThreshold: 2 })
      yield* faults.failAll()
      for (let i = 0; i < 2; i++) assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k"))))
      assert.strictEqual((yield* stats).breaker, "open")
      yield* faults.heal
      yield* faults.resetCounts
      const get = errorOf(yield* Effect.exit(store.get("k")))
      assert.instanceOf(get.cause, ResilientCacheStore.CircuitOpen)
      const lease = errorOf(yield* Effect.exit(store.getOrLease("k", bytes("\u0000lease"), ttl)))
      assert.instanceOf(lease.cause, ResilientCacheStore.CircuitOpen)
      assert.strictEqual((yield* faults.counts).total, 0)
    }).pipe(Effect.provide(Metrics.layer)))
})

describe("queued invalidations and the breaker", () => {
  it.scoped("while the breaker is open, a read of a queued key is refused once (one rejection), reaching no store", () =>
    Effect.gen(function*() {
      const { faults, stats, store } = yield* setup({ failureThreshold: 1 })
      yield* faults.failAll()
      yield* store.delete(["k"]) // fails, opens the breaker, queued
      yield* faults.heal
      yield* faults.resetCounts
      const before = (yield* stats).rejected
      const error = errorOf(yield* Effect.exit(store.get("k")))
      assert.strictEqual(error.operation, "get")
      assert.instanceOf(error.cause, ResilientCacheStore.CircuitOpen)
      assert.strictEqual((yield* stats).rejected - before, 1)
      assert.strictEqual((yield* faults.counts).total, 0)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("a queued pattern whose replay fails fails the read waiting for it, as that read's own error", () =>
    Effect.gen(function*() {
      const { faults, memory, stats, store } = yield* setup({ failureThreshold: 100 })
      yield* memory.set("user:1", bytes("old"), ttl)
      yield* faults.failAll()
      yield* store.deletePattern("user:*") // queued
      yield* faults.heal
      yield* faults.failNext(1, { operations: ["deletePattern"] })
      const error = errorOf(yield* Effect.exit(store.get("user:1")))
      assert.strictEqual(error.operation, "get")
      assert.instanceOf(error.cause, FaultInjection.InjectedFault)
      assert.strictEqual((yield* stats).replayFailures, 1, "one failed replay, counted once")
      // the next read replays the pattern and reads after it
      assertNone(yield* store.get("user:1"))
      assertNone(yield* memory.get("user:1"))
    }).pipe(Effect.provide(Metrics.layer)))
})

describe("the operations", () => {
  it.scoped("an empty getMany answers [] without a store call (Redis' MGET refuses an empty key list)", () =>
    Effect.gen(function*() {
      const { faults, store } = yield* setup()
      deepStrictEqual(yield* store.getMany([]), [])
      assert.strictEqual((yield* faults.counts).total, 0)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("a delete the open breaker refuses is queued, and the log line names the store and the operation", () =>
    Effect.gen(function*() {
      const logs = capture()
      yield* logs.around(Effect.gen(function*() {
        const { faults, store } = yield* setup({ name: "sessions", failureThreshold: 1 })
        yield* faults.failAll()
        assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k")))) // opens the breaker
        assert.strictEqual(yield* store.delete(["k"]), 0)
      }))
      const queued = logs.lines.filter((line) => line.message.includes("queued for replay"))
      assert.strictEqual(queued.length, 1)
      assert.include(queued[0]!.message, "cache store unavailable during delete: circuit breaker open")
      assert.isAbove(logs.lines.length, 1) // the breaker's line too
      for (const line of logs.lines) assertSome(line.store, "sessions")
    }).pipe(Effect.provide(Metrics.layer)))
})

describe("whole-file survivors: operation names, keys claimed, the fast path's conditions", () => {
  it.scoped("a call the open breaker refuses names its own operation", () =>
    Effect.gen(function*() {
      const logs = capture()
      const { faults, store } = yield* setup({ storeEnforcesTimeout: true, failureThreshold: 1 })
      yield* faults.failAll()
      assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k")))) // opens the breaker
      yield* faults.heal
      const calls = [
        ["get", store.get("k")],
        ["getOrLease", store.getOrLease("k", bytes("\u0000lease"), ttl)],
        ["compareAndDelete", store.compareAndDelete("k", bytes("\u0000lease"))]
      ] as const
      for (const [operation, call] of calls) {
        const error = errorOf(yield* Effect.exit(call as Effect.Effect<unknown, CacheStore.CacheUnavailable>))
        assert.strictEqual(error.operation, operation)
        assert.instanceOf(error.cause, ResilientCacheStore.CircuitOpen)
      }
      yield* logs.around(Effect.asVoid(store.deletePattern("k*"))) // refused, queued
      assert.isTrue(logs.lines.some((line) => line.message.includes("during deletePattern: circuit breaker open")))
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("setIfAbsent of a queued key deletes it first, so the lease is taken", () =>
    Effect.gen(function*() {
      const { faults, memory, store } = yield* setup({ failureThreshold: 100 })
      yield* memory.set("k", bytes("old"), ttl)
      yield* faults.failAll()
      yield* store.delete(["k"]) // queued
      yield* faults.heal
      assert.isTrue(yield* store.setIfAbsent("k", bytes("\u0000lease"), ttl))
      assertSome(text(yield* memory.get("k")), "\u0000lease")
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("an empty delete answers 0 without a store call (Redis' DEL refuses an empty key list)", () =>
    Effect.gen(function*() {
      const { faults, store } = yield* setup()
      assert.strictEqual(yield* store.delete([]), 0)
      assert.strictEqual((yield* faults.counts).total, 0)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("storeEnforcesTimeout with a read retry: get is retried (no fast path around it)", () =>
    Effect.gen(function*() {
      const { faults, store } = yield* setup({ storeEnforcesTimeout: true, readRetry: Schedule.recurs(1) })
      yield* faults.failNext(1, { operations: ["get"] })
      assertNone(yield* store.get("k"))
      assert.strictEqual((yield* faults.counts).get, 2)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("storeEnforcesTimeout covers the operation timeout only: a hung deletePattern still times out", () =>
    Effect.gen(function*() {
      const { faults, stats, store } = yield* setup({ storeEnforcesTimeout: true, deletePatternTimeout: "1 second" })
      yield* faults.hang({ operations: ["deletePattern"] })
      const fiber = yield* Effect.fork(store.deletePattern("k*"))
      yield* TestClock.adjust("1 second")
      assert.strictEqual(yield* Fiber.join(fiber), 0) // timed out, queued
      const s = yield* stats
      assert.strictEqual(s.timeouts, 1)
      assert.strictEqual(s.queueSize, 1)
    }).pipe(Effect.provide(Metrics.layer)))
})
