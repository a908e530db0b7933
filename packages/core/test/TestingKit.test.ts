import { assert, describe, it } from "@effect/vitest"
import { assertLeft, assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { CacheStore, FaultInjection, Metrics } from "../src/index.js"
import { Database, Faults, TestStore } from "../src/testing/index.js"

const bytes = (text: string) => new TextEncoder().encode(text)

describe("testing kit", () => {
  it.effect("TestStore.layer: memory store with TestClock TTLs, fault injection and metrics in one", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const faults = yield* FaultInjection.FaultInjection
      yield* Metrics.Metrics
      yield* store.set("k", bytes("v"), Duration.minutes(1))
      assert.isTrue(Option.isSome(yield* store.get("k")))
      yield* TestClock.adjust("1 minute")
      assertNone(yield* store.get("k"))
      yield* faults.failAll()
      assert.isTrue((yield* Effect.either(store.get("k")))._tag === "Left")
      assert.strictEqual((yield* faults.counts).failed, 1)
    }).pipe(Effect.provide(TestStore.layer())))

  // live clock: the resilient store retries the delete with backoff before it queues it
  it.live("TestStore.layer: wrapStore sits under the faults, resilient wraps them all", () =>
    Effect.gen(function*() {
      let seen = 0
      const layer = TestStore.layer({
        resilient: { timeout: "100 millis" },
        wrapStore: (inner) =>
          CacheStore.mapOperations(inner, (_, effect) => Effect.zipLeft(effect, Effect.sync(() => seen++)))
      })
      yield* Effect.gen(function*() {
        const store = yield* CacheStore.CacheStore
        const faults = yield* FaultInjection.FaultInjection
        yield* store.set("k", bytes("v"), Duration.minutes(1))
        assert.strictEqual(seen, 1)
        yield* faults.failAll({ operations: ["delete"] })
        yield* store.delete(["k"]) // queued by the resilient store: it does not fail
        yield* faults.heal
        assertNone(yield* store.get("k")) // the queued delete was replayed before the read
      }).pipe(Effect.provide(layer), Effect.scoped)
    }))

  it.effect("Faults: the arbitraries reach every kind of fault", () =>
    Effect.sync(() => {
      const store = new Set(
        FastCheck.sample(Faults.storeFault({ hung: true }), { numRuns: 300, seed: 1 }).map((f) => f._tag)
      )
      deepStrictEqual([...store].sort(), ["Down", "Flapping", "Healthy", "Hung", "Slow"])
      const withoutHung = FastCheck.sample(Faults.storeFault(), { numRuns: 300, seed: 1 })
      assert.isFalse(withoutHung.some((fault) => fault._tag === "Hung"))
      const lookup = new Set(FastCheck.sample(Faults.lookupFault, { numRuns: 300, seed: 1 }).map((f) => f._tag))
      deepStrictEqual([...lookup].sort(), ["Failing", "Healthy", "Slow"])
      const schedules = FastCheck.sample(Faults.schedule({ maxLength: 3 }), { numRuns: 50, seed: 1 })
      assert.isTrue(schedules.every((schedule) => schedule.length <= 3))
      assert.isTrue(schedules.some((schedule) => schedule.some((step) => "store" in step)))
      assert.isTrue(schedules.some((schedule) => schedule.some((step) => "lookup" in step)))
    }))

  it.effect("Faults.applyStoreFault: flapping fails the next n calls; slow waits on the clock; healthy heals", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const faults = yield* FaultInjection.FaultInjection
      yield* Faults.applyStoreFault(faults, { _tag: "Flapping", failures: 2 })
      const results = yield* Effect.forEach([1, 2, 3], () => Effect.either(store.get("k")))
      deepStrictEqual(results.map((result) => result._tag), ["Left", "Left", "Right"])
      yield* Faults.applyStoreFault(faults, { _tag: "Slow", latency: Duration.seconds(2) })
      const slow = yield* Effect.fork(store.get("k"))
      yield* TestClock.adjust("1999 millis")
      assert.isNull(slow.unsafePoll())
      yield* TestClock.adjust("1 millis")
      assertNone(yield* Fiber.join(slow))
      yield* Faults.applyStoreFault(faults, { _tag: "Down" })
      assert.strictEqual((yield* Effect.either(store.get("k")))._tag, "Left")
      yield* Faults.applyStoreFault(faults, { _tag: "Healthy" })
      assertNone(yield* store.get("k"))
    }).pipe(Effect.provide(TestStore.layer())))

  it.effect("Database: a failing lookup fails n loads; a slow one answers the row it read before the wait", () =>
    Effect.gen(function*() {
      const db = yield* Database.make<number, string>([[1, "old"]])
      yield* db.setFault({ _tag: "Failing", failures: 1 })
      assert.isTrue(db.faulty())
      assertLeft(yield* Effect.either(db.source.load(1)), new Database.LookupFailed({ key: "1" }))
      assert.isFalse(db.faulty())
      assertSome(yield* db.source.load(1), "old")
      yield* db.setFault({ _tag: "Slow", latency: Duration.seconds(1) })
      const writes: Array<string> = []
      db.onWrite((key, value) => writes.push(`${key}=${Option.getOrElse(value, () => "-")}`))
      const load = yield* Effect.fork(db.source.load(1))
      yield* Effect.yieldNow()
      yield* db.write(1, "new")
      yield* TestClock.adjust("1 second")
      assertSome(yield* Fiber.join(load), "old")
      assertSome(db.peek(1), "new")
      deepStrictEqual(writes, ["1=new"])
      assert.strictEqual(db.loads(), 3)
    }))
})
