import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { CacheStore, MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"
import { cooldownFor } from "../src/internal/breaker.js"
import { resilientOverMemory } from "./utils/resilient.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bytes = (text: string) => encoder.encode(text)
const text = (value: Option.Option<Uint8Array>) => Option.map(value, (b) => decoder.decode(b))
const ttl = Duration.hours(1)

/** memory ← fault injection ← resilient store; retries off, no jitter (test/utils/resilient.ts). */
const setup = (options: ResilientCacheStore.Options = {}) => resilientOverMemory(options, { maxEntries: 1_000_000 })

const failureOf = <A>(result: Either.Either<A, CacheStore.CacheUnavailable>): CacheStore.CacheUnavailable => {
  assertTrue(Either.isLeft(result))
  return result.left
}

describe("ResilientCacheStore invalidation queue", () => {
  it.scoped("while the breaker is open, a read of a queued key fails with the breaker's own rejection, not nested", () =>
    Effect.gen(function*() {
      const { faults, memory, store } = yield* setup({ failureThreshold: 1 })
      yield* memory.set("k", bytes("old"), ttl)
      yield* faults.failAll()
      yield* store.delete(["k"]) // fails, opens the breaker, queued
      yield* store.deletePattern("k*") // refused by the breaker, queued
      yield* faults.heal
      yield* faults.resetCounts
      for (
        const [operation, call] of [
          ["get", store.get("k")],
          ["getMany", store.getMany(["k", "x"])],
          ["set", store.set("k", bytes("v"), ttl)],
          ["setIfAbsent", store.setIfAbsent("k", bytes("v"), ttl)],
          ["compareAndSet", store.compareAndSet("k", bytes("old"), bytes("v"), ttl)]
        ] as const
      ) {
        const error = failureOf(yield* Effect.either(call as Effect.Effect<unknown, CacheStore.CacheUnavailable>))
        assert.strictEqual(error.operation, operation)
        assert.instanceOf(error.cause, ResilientCacheStore.CircuitOpen)
        assert.strictEqual(
          error.message,
          `cache store unavailable during ${operation}: circuit breaker open: the store was not called`
        )
      }
      assert.strictEqual((yield* faults.counts).total, 0, "nothing reached the store")
      assertSome(text(yield* memory.get("k")), "old")
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("a read of a key no queued invalidation covers never waits for the queue", () =>
    Effect.gen(function*() {
      const { faults, memory, stats, store } = yield* setup({ failureThreshold: 100 })
      yield* memory.set("other", bytes("v"), ttl)
      yield* faults.failAll()
      yield* store.delete(["a", "b"])
      yield* store.deletePattern("cache:*")
      // deletes still fail: the queue cannot be replayed; reads and writes of other keys still work
      yield* faults.failAll({ operations: ["delete", "deletePattern"] })
      yield* faults.resetCounts
      assertSome(text(yield* store.get("other")), "v")
      yield* store.set("x", bytes("1"), ttl)
      assertSome(text(yield* store.get("x")), "1")
      const counts = yield* faults.counts
      assert.strictEqual(counts.delete + counts.deletePattern, 0, "no replay was attempted for them")
      assert.strictEqual((yield* stats).queueSize, 3)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("a long pattern replay blocks no read: matching keys wait once, then delete themselves; fills survive", () =>
    Effect.gen(function*() {
      const { faults, memory, stats, store } = yield* setup({ failureThreshold: 100, timeout: "250 millis" })
      for (const key of ["cache:1", "cache:2", "cache:3", "other"]) yield* memory.set(key, bytes("old"), ttl)
      yield* faults.failAll()
      yield* store.deletePattern("cache:*")
      yield* faults.heal
      // the store answers, but walking its keyspace takes a minute
      yield* faults.latency("1 minute", { operations: ["deletePattern"] })
      yield* faults.resetCounts
      assertSome(text(yield* store.get("other")), "old") // no wait: no clock adjustment needed
      // the first read of a matching key waits for the replay, at most one operation timeout
      const first = yield* Effect.fork(store.get("cache:1"))
      yield* TestClock.adjust("250 millis")
      assertNone(yield* Fiber.join(first))
      // the replay is now known to be slow: later reads delete their own key, without waiting
      const later = yield* Effect.forEach(["cache:2", "cache:3"], (key) => Effect.fork(store.get(key)))
      for (const fiber of later) assertNone(yield* Fiber.join(fiber))
      // a fill after the miss is not deleted again by the read path
      yield* store.set("cache:1", bytes("new"), ttl)
      assertSome(text(yield* store.get("cache:1")), "new")
      assertSome(text(yield* store.get("cache:1")), "new")
      const counts = yield* faults.counts
      assert.strictEqual(counts.delete, 3, "one delete per matching key, once")
      assert.strictEqual(counts.deletePattern, 1, "the replay is not restarted by reads")
      assert.strictEqual((yield* stats).queueSize, 1)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("a key invalidated again while the queue is collapsed into the overflow pattern is deleted by its next read", () =>
    Effect.gen(function*() {
      const { faults, memory, stats, store } = yield* setup({
        failureThreshold: 100,
        maxQueuedInvalidations: 1,
        overflowPattern: "cache:*"
      })
      for (const key of ["cache:a", "cache:b"]) yield* memory.set(key, bytes("old"), ttl)
      yield* faults.failAll()
      yield* store.delete(["cache:a", "cache:b"]) // overflows: collapsed into "cache:*"
      assert.strictEqual((yield* stats).queueSize, 1)
      yield* faults.heal
      yield* faults.latency("1 minute", { operations: ["deletePattern"] })
      const first = yield* Effect.fork(store.get("cache:a"))
      yield* TestClock.adjust("250 millis")
      assertNone(yield* Fiber.join(first)) // deleted by the read itself: the replay is slow
      yield* store.set("cache:a", bytes("v2"), ttl)
      assertSome(text(yield* store.get("cache:a")), "v2")
      // invalidated again, and the delete fails: the queued overflow pattern covers it again
      yield* faults.failAll({ operations: ["delete"] })
      yield* store.delete(["cache:a"])
      yield* faults.heal
      assertNone(yield* store.get("cache:a"))
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("a pattern replay that times out gets a doubled time limit next time, until it completes", () =>
    Effect.gen(function*() {
      const { faults, memory, stats, store } = yield* setup({
        failureThreshold: 100,
        deletePatternTimeout: "5 seconds",
        replayInterval: "1 second"
      })
      yield* memory.set("cache:1", bytes("old"), ttl)
      yield* faults.failAll()
      yield* store.deletePattern("cache:*")
      yield* faults.heal
      // a keyspace that takes 12 seconds to walk: 5 s, then 10 s are too short, 20 s is enough
      yield* faults.latency("12 seconds", { operations: ["deletePattern"] })
      yield* faults.resetCounts
      for (let second = 0; second < 60 && (yield* stats).queueSize > 0; second++) yield* TestClock.adjust("1 second")
      assert.strictEqual((yield* stats).queueSize, 0)
      assert.strictEqual((yield* faults.counts).deletePattern, 3)
      assert.strictEqual((yield* stats).replayFailures, 2)
      assertNone(yield* memory.get("cache:1"))
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped(
    "200,000 invalidations while the store fails log a bounded number of lines, with the count",
    () =>
      Effect.gen(function*() {
        const lines: Array<string> = []
        const logger = Logger.make(({ logLevel, message }) => {
          lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
        })
        yield* Effect.gen(function*() {
          const { faults, stats, store } = yield* setup({ maxQueuedInvalidations: 10_000, cooldown: "1 second" })
          yield* faults.failAll()
          for (let batch = 0; batch < 2_000; batch++) {
            yield* store.delete(Array.from({ length: 100 }, (_, i) => `key:${batch}:${i}`))
          }
          const during = yield* stats
          assert.strictEqual(during.queueSize, 10_000)
          assert.strictEqual(during.queueOverflows, 190_000)
          yield* faults.heal
          for (let second = 0; second < 10 && (yield* stats).queueSize > 0; second++) {
            yield* TestClock.adjust("1 second")
          }
          assert.strictEqual((yield* stats).queueSize, 0)
        }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.All))
        const queueLines = lines.filter((line) => line.includes("queue") || line.includes("queued"))
        assert.strictEqual(queueLines.filter((line) => line.includes("queued for replay")).length, 1)
        assert.strictEqual(queueLines.filter((line) => line.includes("queue full")).length, 1)
        const summary = queueLines.filter((line) => line.includes("were dropped"))
        assert.strictEqual(summary.length, 1)
        assert.include(summary[0], "190000 invalidation(s) were dropped")
        // the breaker's own lines (opened, half-open, closed) and a few replay failures at most
        assert.isAtMost(lines.length, 12, lines.join("\n"))
      }).pipe(Effect.provide(Metrics.layer)),
    60_000
  )

  it.effect.prop(
    "the breaker's jitter only shortens its cooldown",
    [
      FastCheck.integer({ min: 0, max: 100 }),
      FastCheck.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
      FastCheck.double({ min: 0, max: 1, noNaN: true })
    ],
    ([reopened, r, jitter]) =>
      Effect.sync(() => {
        const config = { cooldownMillis: 1000, maxCooldownMillis: 5000, jitter }
        const base = Math.min(5000, 1000 * 2 ** Math.min(reopened, 52))
        const wait = cooldownFor(config)(reopened, r)
        assert.isAtMost(wait, base)
        assert.isAtLeast(wait, Math.floor(base * (1 - jitter)))
        assert.strictEqual(cooldownFor({ ...config, jitter: 0 })(reopened, r), base)
      })
  )

  it.scoped("rejects options that cannot work, zero timeouts included", () =>
    Effect.gen(function*() {
      const memory = yield* MemoryCacheStore.make()
      for (
        const options of [
          { timeout: 0 },
          { timeout: "0 millis" },
          { timeout: Number.POSITIVE_INFINITY },
          { timeout: Number.NaN },
          { timeout: "banana" as Duration.DurationInput },
          { timeout: "30 days" },
          { deletePatternTimeout: 0 },
          { replayInterval: 0 },
          { cooldown: -1 },
          { cooldown: Number.NaN },
          { maxCooldown: Duration.infinity },
          { cooldownJitter: Number.NaN },
          { cooldownJitter: -0.1 },
          { failureThreshold: Number.POSITIVE_INFINITY },
          { maxQueuedInvalidations: 0 },
          { maxQueuedInvalidations: 2.5 },
          { name: "" },
          { overflowPattern: "" },
          { readRetry: "banana" as unknown as ResilientCacheStore.Retry }
        ] satisfies Array<ResilientCacheStore.Options>
      ) {
        const result = yield* Effect.either(ResilientCacheStore.make(memory, options))
        assert.strictEqual(
          Either.isLeft(result) ? result.left._tag : "accepted",
          "InvalidStoreOptions",
          String(Object.entries(options))
        )
      }
      // the edges that work
      yield* ResilientCacheStore.make(memory, { timeout: "1 millis", cooldown: 0, cooldownJitter: 1, readRetry: false })
    }).pipe(Effect.provide(Metrics.layer)))
})
