import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FastCheck from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { FaultInjection, Glob, MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"

const keys = ["a:1", "a:2", "b:1", "b:2"] as const
const patterns = ["a:*", "*:1", "b:?", "[ab]:2"] as const

type Op =
  | { readonly _tag: "Set"; readonly key: number }
  | { readonly _tag: "Get"; readonly key: number }
  | { readonly _tag: "GetMany" }
  | { readonly _tag: "Delete"; readonly key: number }
  | { readonly _tag: "DeletePattern"; readonly pattern: number }
  | { readonly _tag: "Fail" }
  | { readonly _tag: "SlowPatterns" }
  | { readonly _tag: "Heal" }
  | { readonly _tag: "Wait"; readonly millis: number }

const op: FastCheck.Arbitrary<Op> = FastCheck.oneof(
  { weight: 4, arbitrary: FastCheck.nat(3).map((key): Op => ({ _tag: "Set", key })) },
  { weight: 4, arbitrary: FastCheck.nat(3).map((key): Op => ({ _tag: "Get", key })) },
  { weight: 1, arbitrary: FastCheck.constant<Op>({ _tag: "GetMany" }) },
  { weight: 2, arbitrary: FastCheck.nat(3).map((key): Op => ({ _tag: "Delete", key })) },
  { weight: 2, arbitrary: FastCheck.nat(3).map((pattern): Op => ({ _tag: "DeletePattern", pattern })) },
  { weight: 1, arbitrary: FastCheck.constant<Op>({ _tag: "Fail" }) },
  { weight: 1, arbitrary: FastCheck.constant<Op>({ _tag: "SlowPatterns" }) },
  { weight: 1, arbitrary: FastCheck.constant<Op>({ _tag: "Heal" }) },
  { weight: 2, arbitrary: FastCheck.integer({ min: 1, max: 3000 }).map((millis): Op => ({ _tag: "Wait", millis })) }
)

/** Generous: an operation never waits longer than its time limits (250 ms, pattern replays aside). */
const OPERATION_BOUND = Duration.seconds(10)

/**
 * Runs an effect to its end while moving the TestClock in small steps (operations may wait for a
 * replay or a timeout); fails the test if it has not ended within the bound.
 */
const settle = <A, E>(effect: Effect.Effect<A, E>): Effect.Effect<Exit.Exit<A, E>> =>
  Effect.gen(function*() {
    const fiber = yield* Effect.fork(effect)
    yield* Effect.repeatN(Effect.yieldNow(), 5) // what needs no time ends without moving the clock
    for (let waited = 0; waited <= Duration.toMillis(OPERATION_BOUND); waited += 50) {
      const done = yield* Fiber.poll(fiber)
      if (Option.isSome(done)) return done.value as Exit.Exit<A, E>
      yield* TestClock.adjust("50 millis")
    }
    return assert.fail("an operation did not end within its bound")
  })

describe("ResilientCacheStore under random faults", () => {
  it.effect.prop(
    "no read answers a value written before an invalidation that returned before the read began",
    [FastCheck.array(op, { minLength: 10, maxLength: 40, size: "max" }), FastCheck.constantFrom(1, 3, 100)],
    ([ops, failureThreshold]) =>
      Effect.gen(function*() {
        const memory = yield* MemoryCacheStore.make()
        const { control: faults, store: faulty } = yield* FaultInjection.make(memory)
        const store = yield* ResilientCacheStore.make(faulty, {
          failureThreshold,
          cooldown: "500 millis",
          cooldownJitter: 0,
          deletePatternTimeout: "1 second",
          replayInterval: "700 millis",
          // a small queue, so that overflows (collapsing into one delete of every key) happen too
          maxQueuedInvalidations: 3,
          overflowPattern: "*"
        })
        /** The sequence number of each write; the number below which a key's values are stale. */
        let sequence = 0
        const staleBelow = new Map<string, number>()
        const check = (key: string, value: Option.Option<Uint8Array>) => {
          if (Option.isNone(value)) return
          const written = Number(new TextDecoder().decode(value.value))
          assert.isAtLeast(written, staleBelow.get(key) ?? 0, `${key} answered a value invalidated before the read`)
        }
        const invalidated = (covered: ReadonlyArray<string>) => {
          // every value written so far is stale once the invalidation has returned
          for (const key of covered) staleBelow.set(key, sequence + 1)
        }
        for (const step of ops) {
          switch (step._tag) {
            case "Set": {
              const value = ++sequence
              yield* settle(
                Effect.exit(store.set(keys[step.key], new TextEncoder().encode(String(value)), Duration.hours(1)))
              )
              break
            }
            case "Get": {
              const exit = yield* settle(store.get(keys[step.key]))
              if (Exit.isSuccess(exit)) check(keys[step.key], exit.value)
              break
            }
            case "GetMany": {
              const exit = yield* settle(store.getMany(keys))
              if (Exit.isSuccess(exit)) exit.value.forEach((value, i) => check(keys[i]!, value))
              break
            }
            case "Delete": {
              const exit = yield* settle(store.delete([keys[step.key]]))
              assert.isTrue(Exit.isSuccess(exit), "an invalidation never fails")
              invalidated([keys[step.key]])
              break
            }
            case "DeletePattern": {
              const pattern = patterns[step.pattern]
              const exit = yield* settle(store.deletePattern(pattern))
              assert.isTrue(Exit.isSuccess(exit), "an invalidation never fails")
              invalidated(keys.filter(Glob.matcher(pattern)))
              break
            }
            case "Fail":
              yield* faults.failAll()
              break
            case "SlowPatterns":
              yield* faults.latency("3 seconds", { operations: ["deletePattern"] })
              break
            case "Heal":
              yield* faults.heal
              break
            case "Wait":
              yield* TestClock.adjust(Duration.millis(step.millis))
              break
          }
        }
        // once the store is healthy again, the queue drains by itself
        yield* faults.heal
        for (let i = 0; i < 100 && (yield* (yield* Metrics.Metrics).storeSnapshot()).queueSize > 0; i++) {
          yield* TestClock.adjust("1 second")
        }
        assert.strictEqual((yield* (yield* Metrics.Metrics).storeSnapshot()).queueSize, 0)
        for (const key of keys) check(key, yield* memory.get(key))
      }).pipe(Effect.scoped, Effect.provide(Metrics.layer)),
    {
      fastCheck: { numRuns: 50 },
      timeout: 120_000
    }
  )
})
