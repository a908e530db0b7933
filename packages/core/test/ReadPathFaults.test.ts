import { assert, describe, it } from "@effect/vitest"
import { assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as TestClock from "effect/TestClock"
import {
  CacheAside,
  CacheStore,
  Codec,
  DataSource,
  FaultInjection,
  MemoryCacheStore,
  Metrics,
  ResilientCacheStore
} from "../src/index.js"

const Faulty = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

const base = {
  namespace: "faults",
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

/** Yields until `check` holds (a bounded number of times: never a wall-clock assertion). */
const until = (check: Effect.Effect<boolean>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (yield* check) return
      yield* Effect.yieldNow()
    }
    assert.fail("the condition never held")
  })

const freshEntry = (value: string) =>
  Effect.map(
    Clock.currentTimeMillis,
    (now) =>
      Either.getOrThrow(Codec.make(Schema.String).encode({ _tag: "Value", value, expiresAt: now + 60_000, delta: 0 }))
  )

describe("the lock and corrupt entries (defect 10)", () => {
  it.scoped("a waiter that starts over (the lease went, another came) counts one lock wait", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const faults = yield* FaultInjection.FaultInjection
      let loads = 0
      const cache = yield* CacheAside.make({
        ...base,
        lookup: (id: number) => Effect.sync(() => (loads++, Option.some(`v${id}`))),
        lock: { wait: "5 seconds", poll: "20 millis" }
      })
      const full = cache.keyOf(1)
      yield* store.set(full, Codec.lease("another"), Duration.minutes(1))
      yield* faults.latency("50 millis", { operations: ["setIfAbsent"] })
      const waiter = yield* Effect.fork(cache.get(1))
      yield* until(Effect.map(faults.counts, (c) => c.getOrLease === 1)) // the waiter's lease-read saw the lease
      yield* store.delete([full]) // the holder released its lease ...
      yield* TestClock.adjust("20 millis") // ... the waiter polls, finds it absent, asks for the lease
      yield* until(Effect.map(faults.counts, (c) => c.setIfAbsent === 1))
      yield* store.set(full, Codec.lease("a third"), Duration.minutes(1)) // ... and a third process takes it first
      yield* TestClock.adjust("50 millis")
      yield* store.set(full, yield* freshEntry("filled"), Duration.minutes(1)) // whose fill lands
      for (let i = 0; i < 5 && waiter.unsafePoll() === null; i++) yield* TestClock.adjust("20 millis")
      assertSome(yield* Fiber.join(waiter), "filled")
      assert.strictEqual(loads, 0)
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("faults")).lockWaits, 1)
    }).pipe(Effect.provide(Faulty)))

  it.scoped("taking over a corrupt entry never removes another process's lease written meanwhile", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const faults = yield* FaultInjection.FaultInjection
      const cache = yield* CacheAside.make({
        ...base,
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)),
        lock: false
      })
      const full = cache.keyOf(1)
      yield* store.set(full, new TextEncoder().encode("{not json"), Duration.minutes(1))
      yield* faults.latency("50 millis", { operations: ["compareAndSet"] })
      const reader = yield* Effect.fork(cache.get(1))
      yield* until(Effect.map(faults.counts, (c) => c.compareAndSet === 1))
      const theirs = Codec.lease("another process")
      yield* store.set(full, theirs, Duration.minutes(1))
      yield* TestClock.adjust("50 millis")
      assertSome(yield* Fiber.join(reader), "v1")
      const left = yield* store.get(full)
      assertTrue(Option.isSome(left) && Buffer.from(left.value).equals(Buffer.from(theirs)), "their lease is intact")
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("faults")).decodeErrors, 1)
    }).pipe(Effect.provide(Faulty)))
})

describe("getMany and the lock (defect 6)", () => {
  it.scoped("keys leased by another process are waited for all at once, not in groups of the load concurrency", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const metrics = yield* Metrics.Metrics
      const cache = yield* CacheAside.make({
        ...base,
        namespace: "waits",
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)),
        lock: { wait: "200 millis", poll: "20 millis" },
        getManyConcurrency: 2
      })
      const ids = Array.from({ length: 20 }, (_, i) => i)
      for (const id of ids) yield* store.set(cache.keyOf(id), Codec.lease(`holder ${id}`), Duration.minutes(1))
      const many = yield* Effect.fork(cache.getMany(ids))
      yield* until(Effect.map(metrics.snapshot("waits"), (s) => s.lockWaits === 20))
      for (let i = 0; i < 11; i++) yield* TestClock.adjust("20 millis") // one lock.wait, in polls
      assert.strictEqual((yield* metrics.snapshot("waits")).lockTimeouts, 20, "every wait ended within one lock.wait")
      const answers = yield* Fiber.join(many)
      assert.strictEqual(answers.length, 20)
    }).pipe(Effect.provide(Faulty)))
})

describe("outage logging (defect 9)", () => {
  it.scoped("with an invalidation queued and the breaker open, gets log no line per request", () => {
    const lines: Array<string> = []
    const logger = Logger.make(({ message }) => {
      lines.push(Array.isArray(message) ? message.join(" ") : String(message))
    })
    const services = ResilientCacheStore.layer(FaultInjection.layer(MemoryCacheStore.layer()), {
      failureThreshold: 2,
      cooldown: "1 hour",
      readRetry: false,
      writeRetry: false,
      invalidationRetry: false
    }).pipe(Layer.provideMerge(Metrics.layer))
    return Effect.gen(function*() {
      const faults = yield* FaultInjection.FaultInjection
      const cache = yield* CacheAside.make({ ...base, lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)) })
      yield* faults.failAll()
      yield* cache.invalidate(1) // queued: the store cannot be reached
      for (let i = 0; i < 50; i++) assertSome(yield* cache.get(i % 5), `v${i % 5}`)
      const warnings = lines.filter((line) => line.includes("cache-aside: cache store unavailable"))
      assert.isAtMost(warnings.length, 2, "at most the failures that opened the breaker are logged")
      const metrics = yield* Metrics.Metrics
      assert.isAtLeast((yield* metrics.snapshot("faults")).fallbacks, 50)
    }).pipe(Effect.provide(services), Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
  })
})

describe("lifecycle (defect 8)", () => {
  it.scoped("closing the cache's scope stops every background fiber: refresh, soft-timeout load, batch", () =>
    Effect.gen(function*() {
      let interrupted = 0
      let hang = false
      const counted = <A>(effect: Effect.Effect<A>) =>
        Effect.onInterrupt(effect, () => Effect.sync(() => interrupted++))
      const scope = yield* Scope.make()
      const cache = yield* CacheAside.make({
        ...base,
        lookup: DataSource.make(
          (id: number) => hang ? counted(Effect.never) : Effect.succeed(Option.some(`v${id}`)),
          () => counted(Effect.never)
        ),
        ttl: "100 millis",
        staleWhileRevalidate: "100 millis",
        failSafe: { maxStale: "1 hour" },
        lookupTimeout: { soft: "50 millis" }
      }).pipe(Scope.extend(scope))
      yield* cache.get(1)
      yield* cache.get(2)
      hang = true
      yield* TestClock.adjust("150 millis")
      assertSome(yield* cache.get(1), "v1") // stale: a background refresh starts, and hangs
      yield* TestClock.adjust("100 millis")
      const soft = yield* Effect.fork(cache.get(2)) // fail-safe: the reload hangs past the soft timeout
      yield* TestClock.adjust("50 millis")
      assertSome(yield* Fiber.join(soft), "v2")
      const batch = yield* Effect.forkDaemon(cache.getMany([3, 4])) // a batch leader, its loadMany hangs
      yield* until(Effect.sync(() => interrupted === 0 && batch.unsafePoll() === null))
      for (let i = 0; i < 10; i++) yield* Effect.yieldNow()
      yield* Scope.close(scope, Exit.void)
      yield* until(Effect.sync(() => interrupted === 3))
      assert.strictEqual(interrupted, 3)
      const exit = yield* Fiber.await(batch)
      assertTrue(Exit.isInterrupted(exit))
    }).pipe(Effect.provide(Faulty)))
})

describe("lookup context (defect 8)", () => {
  it.scoped("a lookup's span parent is its caller's span, never the span make ran in", () =>
    Effect.gen(function*() {
      const parents: Array<string | undefined> = []
      const cache = yield* CacheAside.make({
        ...base,
        lookup: (id: number) =>
          Effect.map(Effect.currentSpan, (span) => {
            const parent = Option.flatMap(span.parent, (p) => p._tag === "Span" ? Option.some(p.name) : Option.none())
            parents.push(Option.getOrUndefined(parent))
            return Option.some(`v${id}`)
          })
      }).pipe(Effect.withSpan("make"))
      yield* cache.get(1).pipe(Effect.withSpan("request"))
      yield* cache.getMany([2, 3]).pipe(Effect.withSpan("batch request"))
      deepStrictEqual(parents, ["request", "cache_aside.get_many", "cache_aside.get_many"])
    }).pipe(Effect.provide(Faulty)))
})
