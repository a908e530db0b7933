import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { CacheStore, FaultInjection, MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"
import { resilientOverMemory } from "./utils/resilient.js"

/** Lets the breaker's background probe run (it is forked; a few scheduler turns). */
const probeRuns = Effect.repeatN(Effect.yieldNow(), 20)

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bytes = (text: string) => encoder.encode(text)
const text = (value: Option.Option<Uint8Array>) => Option.map(value, (b) => decoder.decode(b))
const ttl = Duration.hours(1)

/** Records the calls that reach the inner store, in order. */
const recording = (inner: CacheStore.CacheStore["Type"], calls: Array<string>): CacheStore.CacheStore["Type"] =>
  CacheStore.CacheStore.of({
    get: (key) => Effect.suspend(() => (calls.push(`get ${key}`), inner.get(key))),
    getOrLease: (key, lease, ttl) =>
      Effect.suspend(() => (calls.push(`getOrLease ${key}`), inner.getOrLease(key, lease, ttl))),
    getMany: (keys) => Effect.suspend(() => (calls.push(`getMany ${keys.join(",")}`), inner.getMany(keys))),
    set: (key, value, ttl) => Effect.suspend(() => (calls.push(`set ${key}`), inner.set(key, value, ttl))),
    setIfAbsent: (key, value, ttl) =>
      Effect.suspend(() => (calls.push(`setIfAbsent ${key}`), inner.setIfAbsent(key, value, ttl))),
    compareAndSet: (key, expected, value, ttl) =>
      Effect.suspend(() => (calls.push(`compareAndSet ${key}`), inner.compareAndSet(key, expected, value, ttl))),
    compareAndDelete: (key, expected) =>
      Effect.suspend(() => (calls.push(`compareAndDelete ${key}`), inner.compareAndDelete(key, expected))),
    delete: (keys) => Effect.suspend(() => (calls.push(`delete ${keys.join(",")}`), inner.delete(keys))),
    deletePattern: (pattern) =>
      Effect.suspend(() => (calls.push(`deletePattern ${pattern}`), inner.deletePattern(pattern)))
  })

/** memory ← recording ← fault injection ← resilient store. Retries off and no jitter unless asked. */
const setup = (options: ResilientCacheStore.Options = {}) =>
  Effect.gen(function*() {
    const calls: Array<string> = []
    const resilient = yield* resilientOverMemory(options, {}, (memory) => recording(memory, calls))
    return { ...resilient, calls, metrics: yield* Metrics.Metrics }
  })

const causeOf = <A>(result: Either.Either<A, CacheStore.CacheUnavailable>): unknown =>
  Either.isLeft(result) ? result.left.cause : undefined

const rejected = <A>(result: Either.Either<A, CacheStore.CacheUnavailable>) =>
  causeOf(result) instanceof ResilientCacheStore.CircuitOpen

/** Opens the breaker: `threshold` failed gets. */
const openBreaker = (
  env: Effect.Effect.Success<ReturnType<typeof setup>>,
  threshold: number
) =>
  Effect.gen(function*() {
    yield* env.faults.failAll()
    for (let i = 0; i < threshold; i++) {
      const result = yield* Effect.either(env.store.get("k"))
      assert.instanceOf(causeOf(result), FaultInjection.InjectedFault)
    }
    assert.strictEqual((yield* env.stats).breaker, "open")
  })

describe("ResilientCacheStore", () => {
  describe("timeouts", () => {
    it.scoped("a hung store answers CacheUnavailable after the operation timeout", () =>
      Effect.gen(function*() {
        const { faults, stats, store } = yield* setup({ timeout: "250 millis" })
        yield* faults.hang()
        const fiber = yield* Effect.fork(Effect.either(store.get("k")))
        yield* TestClock.adjust("249 millis")
        assertNone(yield* Fiber.poll(fiber))
        yield* TestClock.adjust("1 millis")
        const result = yield* Fiber.join(fiber)
        assert.isTrue(Either.isLeft(result))
        assert.isTrue(Cause.isTimeoutException(causeOf(result)))
        const s = yield* stats
        assert.strictEqual(s.timeouts, 1)
        assert.strictEqual(s.failures, 1)
        assert.strictEqual(s.breaker, "closed")
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("a hung store opens the breaker like a failing one, then calls fail without waiting", () =>
      Effect.gen(function*() {
        const { faults, stats, store } = yield* setup({ timeout: "100 millis", failureThreshold: 3 })
        yield* faults.hang()
        for (let i = 0; i < 3; i++) {
          const fiber = yield* Effect.fork(Effect.either(store.get("k")))
          yield* TestClock.adjust("100 millis")
          assert.isTrue(Cause.isTimeoutException(causeOf(yield* Fiber.join(fiber))))
        }
        assert.strictEqual((yield* stats).breaker, "open")
        yield* faults.resetCounts
        // no clock adjustment: these complete at once
        const results = yield* Effect.forEach(Array.from({ length: 50 }), () => Effect.either(store.get("k")))
        assert.isTrue(results.every(rejected))
        assert.strictEqual((yield* faults.counts).total, 0)
      }).pipe(Effect.provide(Metrics.layer)))
  })

  describe("circuit breaker", () => {
    it.scoped("opens after N consecutive failures; while open no call reaches the store", () =>
      Effect.gen(function*() {
        const env = yield* setup({ failureThreshold: 5 })
        yield* openBreaker(env, 5)
        yield* env.faults.resetCounts
        const results = yield* Effect.forEach(Array.from({ length: 100 }), (_, i) =>
          Effect.either(
            i % 3 === 0
              ? env.store.get("k")
              : i % 3 === 1
              ? env.store.getMany(["a", "b"])
              : env.store.set("k", bytes("v"), ttl)
          ))
        assert.isTrue(results.every(rejected))
        assert.strictEqual((yield* env.faults.counts).total, 0)
        const s = yield* env.stats
        assert.strictEqual(s.breakerOpened, 1)
        assert.strictEqual(s.rejected, 100)
        assert.strictEqual(s.failures, 5)
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("a success resets the count of consecutive failures", () =>
      Effect.gen(function*() {
        const { faults, stats, store } = yield* setup({ failureThreshold: 3 })
        yield* faults.failNext(2)
        yield* Effect.either(store.get("k"))
        yield* Effect.either(store.get("k"))
        yield* store.get("k")
        yield* faults.failNext(2)
        yield* Effect.either(store.get("k"))
        yield* Effect.either(store.get("k"))
        assert.strictEqual((yield* stats).breaker, "closed")
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("after the cooldown one probe runs in the background, calls fail fast meanwhile; it closes the breaker, hits resume", () =>
      Effect.gen(function*() {
        const env = yield* setup({ failureThreshold: 2, cooldown: "1 second" })
        const { faults, memory, stats, store } = env
        yield* memory.set("k", bytes("v"), ttl)
        yield* openBreaker(env, 2)
        yield* faults.heal
        yield* faults.resetCounts
        yield* TestClock.adjust("999 millis")
        assert.isTrue(rejected(yield* Effect.either(store.get("k"))), "still open before the cooldown ends")
        assert.strictEqual((yield* stats).breaker, "open")
        yield* TestClock.adjust("1 millis")
        // the probe takes a while; no call waits for it: every call made meanwhile fails fast
        yield* faults.latency("100 millis")
        const results = yield* Effect.forEach(Array.from({ length: 10 }), () => Effect.either(store.get("k")))
        assert.strictEqual(results.filter(rejected).length, 10)
        assert.strictEqual((yield* stats).breaker, "half-open")
        yield* TestClock.adjust("100 millis")
        yield* probeRuns
        assert.strictEqual((yield* faults.counts).get, 1, "exactly one probe reached the store")
        const s = yield* stats
        assert.strictEqual(s.breaker, "closed")
        assert.strictEqual(s.breakerClosed, 1)
        // hits resume
        yield* faults.heal
        const hits = yield* Effect.forEach(Array.from({ length: 5 }), () => store.get("k"))
        assert.isTrue(hits.every((hit) => Option.getOrUndefined(text(hit)) === "v"))
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("a failed probe re-opens the breaker for a doubled cooldown, bounded by maxCooldown", () =>
      Effect.gen(function*() {
        const env = yield* setup({ failureThreshold: 1, cooldown: "1 second", maxCooldown: "3 seconds" })
        const { faults, stats, store } = env
        yield* openBreaker(env, 1)
        const probeAfter = (wait: Duration.DurationInput) =>
          Effect.gen(function*() {
            yield* faults.resetCounts
            yield* TestClock.adjust(Duration.subtract(Duration.decode(wait), Duration.millis(1)))
            assert.isTrue(rejected(yield* Effect.either(store.get("k"))))
            yield* TestClock.adjust("1 millis")
            // this call is refused at once and starts the probe in the background, which fails
            assert.isTrue(rejected(yield* Effect.either(store.get("k"))))
            yield* probeRuns
            assert.strictEqual((yield* faults.counts).get, 1, "one probe reached the store")
            assert.strictEqual((yield* stats).breaker, "open")
          })
        yield* probeAfter("1 second")
        yield* probeAfter("2 seconds")
        yield* probeAfter("3 seconds")
        yield* probeAfter("3 seconds")
        const s = yield* stats
        assert.strictEqual(s.breakerOpened, 5)
        assert.strictEqual(s.breaker, "open")
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("the breaker state is in the Metrics snapshot of every namespace", () =>
      Effect.gen(function*() {
        const env = yield* setup({ failureThreshold: 1, name: "redis" })
        assert.strictEqual((yield* env.metrics.snapshot("user")).store.breaker, "closed")
        yield* openBreaker(env, 1)
        assert.strictEqual((yield* env.metrics.snapshot("user")).store.breaker, "open")
        assert.strictEqual((yield* env.metrics.snapshot()).store.breakerOpened, 1)
        assert.strictEqual((yield* env.metrics.storeSnapshot("redis")).breaker, "open")
        assert.strictEqual((yield* env.metrics.storeSnapshot("other")).breaker, "closed")
      }).pipe(Effect.provide(Metrics.layer)))
  })

  describe("no lost invalidations", () => {
    it.scoped("a delete that cannot reach the store is queued and succeeds; the old value is not served after recovery", () =>
      Effect.gen(function*() {
        const { calls, faults, memory, stats, store } = yield* setup()
        yield* memory.set("k", bytes("old"), ttl)
        yield* faults.failAll()
        assert.strictEqual(yield* store.delete(["k"]), 0)
        assert.strictEqual((yield* stats).queueSize, 1)
        yield* faults.heal
        // the store came back with the old value still in it
        assertSome(text(yield* memory.get("k")), "old")
        calls.length = 0
        assertNone(yield* store.get("k")) // the first read after recovery misses
        deepStrictEqual(calls, ["delete k", "get k"], "the delete is replayed before the read")
        const s = yield* stats
        assert.strictEqual(s.queueSize, 0)
        assert.strictEqual(s.invalidationsQueued, 1)
        assert.strictEqual(s.invalidationsReplayed, 1)
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("a pattern delete rejected by the open breaker is queued, then replayed before reads", () =>
      Effect.gen(function*() {
        const env = yield* setup({ failureThreshold: 1 })
        const { calls, faults, memory, store } = env
        yield* memory.set("cache:user:1:1", bytes("old"), ttl)
        yield* memory.set("cache:user:1:2", bytes("old"), ttl)
        yield* openBreaker(env, 1)
        yield* faults.heal
        assert.strictEqual(yield* store.deletePattern("cache:user:*"), 0)
        // the first background round finds the breaker open and starts the probe; the next replays
        yield* TestClock.adjust("2 seconds")
        calls.length = 0
        const values = yield* store.getMany(["cache:user:1:1", "cache:user:1:2"])
        for (const value of values) assertNone(value)
        deepStrictEqual(calls, ["getMany cache:user:1:1,cache:user:1:2"], "replayed by the background fiber")
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("while queued invalidations cannot be replayed, reads and writes fail instead of using the store", () =>
      Effect.gen(function*() {
        const { faults, memory, stats, store } = yield* setup({ failureThreshold: 100 })
        yield* memory.set("k", bytes("old"), ttl)
        // deletes fail, reads and writes would work: the queued delete must still come first
        yield* faults.failAll({ operations: ["delete"] })
        yield* store.delete(["k"])
        yield* faults.resetCounts
        const read = yield* Effect.either(store.get("k"))
        assert.isTrue(Either.isLeft(read))
        const many = yield* Effect.either(store.getMany(["k"]))
        assert.isTrue(Either.isLeft(many))
        const write = yield* Effect.either(store.set("k", bytes("other"), ttl))
        assert.isTrue(Either.isLeft(write))
        const counts = yield* faults.counts
        assert.strictEqual(counts.get + counts.getMany + counts.set, 0, "nothing read from or written to the store")
        assertSome(text(yield* memory.get("k")), "old")
        const s = yield* stats
        assert.strictEqual(s.droppedWrites, 1)
        assert.strictEqual(s.replayFailures, 3)
        assert.strictEqual(s.queueSize, 1)
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("a write after recovery replays the queue first, then writes", () =>
      Effect.gen(function*() {
        const { calls, faults, memory, store } = yield* setup()
        yield* memory.set("k", bytes("old"), ttl)
        yield* faults.failAll()
        yield* store.delete(["k"])
        yield* faults.heal
        calls.length = 0
        yield* store.set("k", bytes("new"), ttl)
        deepStrictEqual(calls, ["delete k", "set k"])
        assertSome(text(yield* store.get("k")), "new")
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("the background fiber replays the queue while nothing else happens", () =>
      Effect.gen(function*() {
        const { faults, memory, stats, store } = yield* setup({ replayInterval: "500 millis" })
        yield* memory.set("k", bytes("old"), ttl)
        yield* faults.failAll()
        yield* store.delete(["k"])
        yield* TestClock.adjust("500 millis")
        assert.strictEqual((yield* stats).queueSize, 1, "still failing: kept")
        yield* faults.heal
        yield* TestClock.adjust("500 millis")
        assert.strictEqual((yield* stats).queueSize, 0)
        assertNone(yield* memory.get("k"))
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("the queue keeps each key or pattern once, at its latest position, and replays in order", () =>
      Effect.gen(function*() {
        const { calls, faults, stats, store } = yield* setup({ failureThreshold: 100 })
        yield* faults.failAll()
        yield* store.delete(["a", "b"])
        yield* store.deletePattern("p:*")
        yield* store.delete(["a"])
        yield* store.deletePattern("p:*")
        yield* store.delete(["c"])
        const s = yield* stats
        assert.strictEqual(s.queueSize, 4)
        assert.strictEqual(s.invalidationsQueued, 6)
        yield* faults.heal
        calls.length = 0
        // a read of a key no queued invalidation covers waits for none of them
        yield* store.get("x")
        deepStrictEqual(calls, ["get x"])
        // the background round replays them, in order
        yield* TestClock.adjust("1 second")
        deepStrictEqual(calls, ["get x", "delete b,a", "deletePattern p:*", "delete c"])
        assert.strictEqual((yield* stats).queueSize, 0)
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("an overflowing queue drops its oldest entry, counted (no overflowPattern)", () =>
      Effect.gen(function*() {
        const { calls, faults, stats, store } = yield* setup({ maxQueuedInvalidations: 3 })
        yield* faults.failAll()
        yield* store.delete(["a", "b", "c"])
        yield* store.delete(["d", "e"])
        const s = yield* stats
        assert.strictEqual(s.queueSize, 3)
        assert.strictEqual(s.queueOverflows, 2)
        yield* faults.heal
        calls.length = 0
        yield* TestClock.adjust("1 second")
        deepStrictEqual(calls, ["delete c,d,e"])
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("with overflowPattern an overflowing queue collapses into one pattern delete that covers later keys", () =>
      Effect.gen(function*() {
        const { calls, faults, memory, stats, store } = yield* setup({
          maxQueuedInvalidations: 2,
          overflowPattern: "cache:*"
        })
        for (const key of ["cache:a", "cache:b", "cache:c", "cache:d", "other"]) {
          yield* memory.set(key, bytes("old"), ttl)
        }
        yield* faults.failAll()
        yield* store.delete(["cache:a", "cache:b", "cache:c"])
        assert.strictEqual((yield* stats).queueSize, 1)
        yield* store.delete(["cache:d"])
        assert.strictEqual((yield* stats).queueSize, 1, "covered by the pattern")
        yield* store.delete(["other"])
        assert.strictEqual((yield* stats).queueSize, 2)
        assert.strictEqual((yield* stats).queueOverflows, 2)
        yield* faults.heal
        calls.length = 0
        yield* TestClock.adjust("1 second")
        deepStrictEqual(calls, ["deletePattern cache:*", "delete other"])
        for (const key of ["cache:a", "cache:b", "cache:c", "cache:d", "other"]) {
          assertNone(yield* memory.get(key))
        }
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("after the cooldown the first call starts the probe; once it succeeds, the queued delete is replayed before the read", () =>
      Effect.gen(function*() {
        const env = yield* setup({ failureThreshold: 1, cooldown: "1 second", replayInterval: "1 hour" })
        const { calls, faults, memory, stats, store } = env
        yield* memory.set("k", bytes("old"), ttl)
        yield* openBreaker(env, 1)
        yield* store.delete(["k"])
        yield* faults.heal
        yield* TestClock.adjust("1 second")
        calls.length = 0
        assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k"))), "refused: it started the probe")
        yield* probeRuns
        assert.strictEqual((yield* stats).breaker, "closed")
        assertNone(yield* store.get("k"))
        deepStrictEqual(calls, ["get cache-aside:breaker-probe", "delete k", "get k"])
      }).pipe(Effect.provide(Metrics.layer)))
  })

  describe("retries", () => {
    it.scoped("writes are retried on errors by default", () =>
      Effect.gen(function*() {
        const memory = yield* MemoryCacheStore.make()
        const { control: faults, store: faulty } = yield* FaultInjection.make(memory)
        const store = yield* ResilientCacheStore.make(faulty)
        yield* faults.failNext(2, { operations: ["set"] })
        const fiber = yield* Effect.fork(store.set("k", bytes("v"), ttl))
        yield* TestClock.adjust("1 second")
        yield* Fiber.join(fiber)
        assertSome(text(yield* memory.get("k")), "v")
        const s = yield* (yield* Metrics.Metrics).storeSnapshot()
        assert.strictEqual(s.retries, 2)
        assert.strictEqual(s.failures, 2)
        assert.strictEqual(s.droppedWrites, 0)
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("reads are not retried by default, and timeouts are never retried", () =>
      Effect.gen(function*() {
        const memory = yield* MemoryCacheStore.make()
        const { control: faults, store: faulty } = yield* FaultInjection.make(memory)
        const store = yield* ResilientCacheStore.make(faulty, { timeout: "100 millis" })
        yield* faults.failNext(1)
        assert.isTrue(Either.isLeft(yield* Effect.either(store.get("k"))))
        assert.strictEqual((yield* faults.counts).get, 1)
        yield* faults.hang({ operations: ["set"] })
        const fiber = yield* Effect.fork(Effect.either(store.set("k", bytes("v"), ttl)))
        yield* TestClock.adjust("100 millis")
        assert.isTrue(Cause.isTimeoutException(causeOf(yield* Fiber.join(fiber))))
        const counts = yield* faults.counts
        assert.strictEqual(counts.set, 1)
        const s = yield* (yield* Metrics.Metrics).storeSnapshot()
        assert.strictEqual(s.retries, 0)
        assert.strictEqual(s.droppedWrites, 1)
      }).pipe(Effect.provide(Metrics.layer)))

    it.scoped("reads can be given a retry schedule", () =>
      Effect.gen(function*() {
        const { faults, store } = yield* setup({ readRetry: ResilientCacheStore.defaultRetry })
        yield* faults.failNext(2)
        const fiber = yield* Effect.fork(store.get("k"))
        yield* TestClock.adjust("1 second")
        assertNone(yield* Fiber.join(fiber))
        assert.strictEqual((yield* faults.counts).get, 3)
      }).pipe(Effect.provide(Metrics.layer)))
  })

  describe("options", () => {
    it.scoped("rejects options that cannot work", () =>
      Effect.gen(function*() {
        const memory = yield* MemoryCacheStore.make()
        for (
          const options of [
            { timeout: 0 },
            { timeout: "-1 second" },
            { failureThreshold: 0 },
            { failureThreshold: 1.5 },
            { cooldownJitter: 2 },
            { maxQueuedInvalidations: -1 },
            // not an object (a JavaScript caller): a TypeError, a defect, before they were checked
            null as unknown as ResilientCacheStore.Options,
            [] as unknown as ResilientCacheStore.Options
          ] satisfies Array<ResilientCacheStore.Options>
        ) {
          const result = yield* Effect.either(ResilientCacheStore.make(memory, options))
          assert.isTrue(Either.isLeft(result), JSON.stringify(options))
          assert.strictEqual(Either.isLeft(result) ? result.left._tag : undefined, "InvalidStoreOptions")
        }
      }).pipe(Effect.provide(Metrics.layer)))
  })
})
