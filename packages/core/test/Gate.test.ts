/**
 * The lookup gate (`lookupConcurrency`) is hand-written waiting, so it is tested the way the house
 * asks of such code: a property over random callers, outcomes, releases and interrupts landing at
 * any point (while waiting, right after a place was handed over, while holding one), counting
 * what matters: never more holders than places, every place given back, every caller that was not
 * interrupted served exactly once, nobody left waiting.
 */
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import { Gate } from "../src/internal/gate.js"

const steps = 16

const Caller = fc.record({
  /** The step at which the caller is interrupted; `steps` or more: never. */
  interruptAt: fc.integer({ min: 0, max: steps + 8 }),
  outcome: fc.constantFrom("succeed", "fail", "die"),
  /** Yields between opening doors and interrupting, so interrupts land before or after a handover runs. */
  yields: fc.integer({ min: 0, max: 2 })
})

describe("Gate", () => {
  it.effect.prop(
    "random callers, releases and interrupts: at most `permits` inside, every place back, nobody stranded",
    [
      fc.integer({ min: 1, max: 4 }),
      fc.array(Caller, { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(), { minLength: steps, maxLength: steps })
    ],
    ([permits, callers, opens]) =>
      Effect.gen(function*() {
        const gate = new Gate(permits)
        let inside = 0
        let most = 0
        const ran = callers.map(() => 0)
        const doors = callers.map(() => Deferred.unsafeMake<void>(FiberId.none))
        const body = (i: number) =>
          Effect.gen(function*() {
            inside++
            most = Math.max(most, inside)
            ran[i]!++
            yield* Effect.ensuring(
              Deferred.await(doors[i]!),
              Effect.sync(() => inside--)
            )
            if (callers[i]!.outcome === "fail") return yield* Effect.fail("failed")
            if (callers[i]!.outcome === "die") return yield* Effect.die("died")
            return i
          })
        const fibers = yield* Effect.forEach(callers, (_, i) => Effect.fork(gate.run(body(i))))
        for (let t = 0; t < steps; t++) {
          yield* Deferred.succeed(doors[opens[t]! % callers.length]!, undefined)
          for (let i = 0; i < callers.length; i++) {
            if (callers[i]!.interruptAt !== t) continue
            for (let y = 0; y < callers[i]!.yields; y++) yield* Effect.yieldNow()
            fibers[i]!.unsafeInterruptAsFork(FiberId.none)
          }
          yield* Effect.yieldNow()
          assert.isAtMost(inside, permits)
        }
        for (const door of doors) yield* Deferred.succeed(door, undefined)
        const exits = yield* Effect.forEach(fibers, (fiber) => Fiber.await(fiber))
        assert.isAtMost(most, permits, "never more holders than places")
        assert.strictEqual(inside, 0)
        assert.strictEqual(gate.available, permits, "every place given back")
        assert.strictEqual(gate.waiting, 0, "nobody left waiting")
        exits.forEach((exit, i) => {
          assert.isAtMost(ran[i]!, 1, `caller ${i} ran once at most`)
          if (callers[i]!.interruptAt >= steps) {
            assert.strictEqual(ran[i], 1, `caller ${i} (never interrupted) was served`)
            assert.strictEqual(Exit.isSuccess(exit), callers[i]!.outcome === "succeed")
          }
        })
      }),
    // 400 runs of up to 12 fibers each: a few seconds of CPU, more on a loaded machine; the
    // default 5 s is a budget for one case, not for a property (a stranded caller still fails it)
    { timeout: 60_000, fastCheck: { numRuns: 400 } }
  )

  it.effect("callers are let in in arrival order; a newcomer never overtakes a waiter", () =>
    Effect.gen(function*() {
      const gate = new Gate(1)
      const order: Array<number> = []
      const door = yield* Deferred.make<void>()
      const first = yield* Effect.fork(gate.run(Deferred.await(door)))
      yield* Effect.yieldNow()
      const waiters = yield* Effect.forEach(
        [1, 2, 3],
        (i) => Effect.fork(gate.run(Effect.sync(() => order.push(i)))),
        { concurrency: 1 }
      )
      yield* Effect.yieldNow()
      assert.strictEqual(gate.waiting, 3)
      yield* Deferred.succeed(door, undefined)
      yield* Fiber.join(first)
      // a newcomer arriving as the place is handed over waits behind the three
      const late = yield* Effect.fork(gate.run(Effect.sync(() => order.push(4))))
      yield* Effect.forEach(waiters, Fiber.join)
      yield* Fiber.join(late)
      deepStrictEqual(order, [1, 2, 3, 4])
      assert.strictEqual(gate.available, 1)
    }))
})
