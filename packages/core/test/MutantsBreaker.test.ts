/**
 * The circuit breaker (internal/breaker.ts) as a pure unit, on a clock and a probe the test drives:
 * the cooldown doubling per failed probe and reset by a close, the failure count reset by a
 * success, error replies, and a probe that ends without an answer (see docs/mutation.md).
 */
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Logger from "effect/Logger"
import { CacheUnavailable } from "../src/CacheStore.js"
import type { Operation } from "../src/CacheStore.js"
import { Breaker } from "../src/internal/breaker.js"
import type { BreakerState, StoreEvent } from "../src/Metrics.js"

const circuitOpen = { circuitOpen: true }
const down = new CacheUnavailable({ operation: "get", cause: new Error("connection refused") })

type ProbeOutcome = "fail" | "succeed" | "interrupt" | "die" | "timeout"

const setup = (options: { readonly threshold?: number } = {}) =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const clock = { now: 0 }
    const counts = new Map<StoreEvent, number>()
    const breakerStates: Array<BreakerState> = []
    const probe = { outcome: "fail" as ProbeOutcome, runs: 0 }
    const logs: Array<string> = []
    const capture = Logger.make(({ logLevel, message }) => {
      logs.push(`${logLevel.label} ${(Array.isArray(message) ? message : [message]).join(" ")}`)
    })
    const breaker = new Breaker({
      circuitOpen,
      failureThreshold: options.threshold ?? 2,
      cooldownMillis: 100,
      maxCooldownMillis: 350,
      jitter: 0,
      probe: Effect.suspend(() => {
        probe.runs++
        switch (probe.outcome) {
          case "fail":
            return Effect.fail(down)
          case "timeout":
            return Effect.fail(new CacheUnavailable({ operation: "get", cause: new Cause.TimeoutException() }))
          case "succeed":
            return Effect.void
          case "interrupt":
            return Effect.interrupt
          case "die":
            return Effect.die("boom")
        }
      }),
      recorder: {
        increment: (event, by = 1) => counts.set(event, (counts.get(event) ?? 0) + by),
        setBreaker: (state) => breakerStates.push(state),
        setQueueSize: () => {}
      },
      now: () => clock.now,
      random: yield* Effect.random,
      scope,
      log: (effect) => Effect.provide(effect, Logger.replace(Logger.defaultLogger, capture))
    })
    const count = (event: StoreEvent) => counts.get(event) ?? 0
    /** One call at `at`: whether it went through, and lets a probe it started run to its end. */
    const callAt = (
      at: number,
      operation: Operation = "get",
      effect: Effect.Effect<string, CacheUnavailable> = Effect.succeed("ok")
    ) =>
      Effect.gen(function*() {
        clock.now = at
        const exit = yield* Effect.exit(breaker.call(operation, effect))
        for (let i = 0; i < 20 && breaker.state._tag === "HalfOpen" && breaker.state.probing; i++) {
          yield* Effect.yieldNow()
        }
        return exit
      })
    const failAt = (at: number, error: CacheUnavailable = down) => callAt(at, "get", Effect.fail(error))
    return { breaker, clock, count, breakerStates, logs, probe, callAt, failAt }
  })

const refusedByBreaker = (exit: Exit.Exit<unknown, CacheUnavailable>) => {
  assert.isTrue(Exit.isFailure(exit))
  if (Exit.isFailure(exit)) {
    const failure = Cause.failureOption(exit.cause)
    assert.isTrue(failure._tag === "Some" && failure.value.cause === circuitOpen)
  }
}

describe("breaker: cooldowns", () => {
  it.scoped("each failed probe doubles the cooldown up to the cap; a close makes the next opening start from the base", () =>
    Effect.gen(function*() {
      const { breaker, callAt, count, failAt, probe } = yield* setup()
      yield* failAt(0)
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 1 })
      yield* failAt(0)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 100, reopened: 0 })
      assert.strictEqual(count("breakerOpened"), 1)

      refusedByBreaker(yield* callAt(99))
      assert.strictEqual(probe.runs, 0)
      refusedByBreaker(yield* callAt(100)) // starts the probe, which fails: 200 ms
      assert.strictEqual(probe.runs, 1)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 300, reopened: 1 })

      refusedByBreaker(yield* callAt(299))
      assert.strictEqual(probe.runs, 1)
      refusedByBreaker(yield* callAt(300)) // second failed probe: 400 ms, capped at 350
      assert.strictEqual(probe.runs, 2)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 650, reopened: 2 })
      assert.strictEqual(count("breakerOpened"), 3)

      probe.outcome = "succeed"
      refusedByBreaker(yield* callAt(650)) // the call that starts the probe is refused too
      assert.strictEqual(probe.runs, 3)
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 0 })
      assert.strictEqual(count("breakerClosed"), 1)
      deepStrictEqual(yield* callAt(651), Exit.succeed("ok"))

      yield* failAt(1000)
      yield* failAt(1000)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 1100, reopened: 0 })
      probe.outcome = "fail"
      yield* callAt(1100)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 1300, reopened: 1 })
    }))

  it.scoped("a probe that is interrupted or dies frees the slot: the next call probes again, with the same cooldown", () =>
    Effect.gen(function*() {
      const { breaker, callAt, count, failAt, probe } = yield* setup({ threshold: 1 })
      yield* failAt(0)
      probe.outcome = "interrupt"
      refusedByBreaker(yield* callAt(100))
      deepStrictEqual(breaker.state, { _tag: "HalfOpen", probing: false, reopened: 0 })
      probe.outcome = "die"
      refusedByBreaker(yield* callAt(101))
      assert.strictEqual(probe.runs, 2)
      deepStrictEqual(breaker.state, { _tag: "HalfOpen", probing: false, reopened: 0 })
      probe.outcome = "fail"
      refusedByBreaker(yield* callAt(102))
      assert.strictEqual(probe.runs, 3)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 302, reopened: 1 })
      assert.strictEqual(count("failures"), 2) // the first call's and the last probe's
    }))

  it.scoped("while a probe runs, calls are refused without a second probe", () =>
    Effect.gen(function*() {
      const { breaker, callAt, count, probe } = yield* setup({ threshold: 1 })
      breaker.state = { _tag: "HalfOpen", probing: true, reopened: 3 }
      refusedByBreaker(yield* callAt(0))
      refusedByBreaker(yield* callAt(10_000))
      assert.strictEqual(probe.runs, 0)
      assert.strictEqual(count("rejected"), 2)
    }))
})

describe("breaker: what counts as a failure", () => {
  it.scoped("a success resets the consecutive failures", () =>
    Effect.gen(function*() {
      const { breaker, callAt, failAt } = yield* setup({ threshold: 2 })
      yield* failAt(0)
      deepStrictEqual(yield* callAt(1), Exit.succeed("ok"))
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 0 })
      yield* failAt(2)
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 1 })
      yield* breaker.settle(false, Exit.void)
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 0 })
    }))

  it.scoped("an error reply counts as a failure but never opens the breaker; a timeout is counted as one", () =>
    Effect.gen(function*() {
      const { breaker, count, failAt } = yield* setup({ threshold: 1 })
      const oom = new CacheUnavailable({ operation: "set", cause: new Error("OOM"), replied: true })
      const exit = yield* failAt(0, oom)
      deepStrictEqual(exit, Exit.fail(oom))
      yield* failAt(1, oom)
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 0 })
      assert.strictEqual(count("failures"), 2)
      assert.strictEqual(count("timeouts"), 0)
      assert.strictEqual(count("breakerClosed"), 0) // a call's error reply is no probe: nothing closed
      yield* failAt(2, new CacheUnavailable({ operation: "get", cause: new Cause.TimeoutException() }))
      assert.strictEqual(count("timeouts"), 1)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 102, reopened: 0 })
    }))

  it.scoped("a probe answered with an error reply closes the breaker (the store is up)", () =>
    Effect.gen(function*() {
      const { breaker, count, failAt } = yield* setup({ threshold: 1 })
      yield* failAt(0)
      yield* breaker.settle(true, Exit.fail(new CacheUnavailable({ operation: "get", replied: true })))
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 0 })
      assert.strictEqual(count("breakerClosed"), 1)
    }))

  it.scoped("a call's interrupt is no answer about the store: nothing counted, the state unchanged", () =>
    Effect.gen(function*() {
      const { breaker, callAt, count, failAt } = yield* setup({ threshold: 2 })
      yield* failAt(0)
      yield* callAt(1, "get", Effect.interrupt)
      yield* callAt(2, "get", Effect.die("bug"))
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 1 })
      assert.strictEqual(count("failures"), 1)
      // and an interrupted call's exit, fed as a probe's while open, leaves it open
      yield* failAt(3)
      yield* breaker.settle(true, Exit.interrupt(FiberId.none))
      deepStrictEqual(breaker.state, { _tag: "Open", until: 103, reopened: 0 })
    }))

  it.scoped("refusals carry the breaker's cause, one error per operation, each counted", () =>
    Effect.gen(function*() {
      const { breaker, count, failAt } = yield* setup({ threshold: 1 })
      yield* failAt(0)
      const a = yield* Effect.flip(breaker.call("get", Effect.succeed(1)))
      const b = yield* Effect.flip(breaker.call("get", Effect.succeed(1)))
      const c = yield* Effect.flip(breaker.call("set", Effect.succeed(1)))
      assert.strictEqual(a, b)
      assert.strictEqual(a.cause, circuitOpen)
      assert.strictEqual(c.operation, "set")
      assert.strictEqual(a.operation, "get")
      assert.strictEqual(count("rejected"), 3)
      assert.isFalse(breaker.isClosed)
    }))
})

describe("breaker: outcomes that arrive late", () => {
  it.scoped("a call let through while closed that fails after the breaker opened changes nothing", () =>
    Effect.gen(function*() {
      const { breaker, count, failAt } = yield* setup({ threshold: 1 })
      yield* failAt(0)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 100, reopened: 0 })
      yield* breaker.settle(false, Exit.fail(down))
      deepStrictEqual(breaker.state, { _tag: "Open", until: 100, reopened: 0 })
      assert.strictEqual(count("breakerOpened"), 1)
    }))

  it.scoped("a call let through while closed that succeeds after the breaker opened does not close it", () =>
    Effect.gen(function*() {
      const { breaker, count, failAt } = yield* setup({ threshold: 1 })
      yield* failAt(0)
      yield* breaker.settle(false, Exit.void)
      deepStrictEqual(breaker.state, { _tag: "Open", until: 100, reopened: 0 })
      assert.strictEqual(count("breakerClosed"), 0)
    }))

  it.scoped("a probe failure that finds the breaker closed counts as a failure of the closed breaker", () =>
    Effect.gen(function*() {
      const { breaker, count } = yield* setup({ threshold: 2 })
      yield* breaker.settle(true, Exit.fail(down))
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 1 })
      assert.strictEqual(count("breakerOpened"), 0)
    }))

  it.scoped("a refusal asked of a breaker that closed meanwhile is still a refusal, without a probe", () =>
    Effect.gen(function*() {
      const { breaker, probe } = yield* setup()
      refusedByBreaker(yield* Effect.exit(breaker.rejectOrProbe("get")))
      assert.strictEqual(probe.runs, 0)
      deepStrictEqual(breaker.state, { _tag: "Closed", failures: 0 })
    }))
})

describe("breaker: states reported", () => {
  it.scoped("closed, open, half-open, closed", () =>
    Effect.gen(function*() {
      const { breakerStates, callAt, failAt, probe } = yield* setup({ threshold: 1 })
      yield* failAt(0)
      probe.outcome = "succeed"
      yield* callAt(100)
      deepStrictEqual(breakerStates, ["closed", "open", "half-open", "closed"])
    }))
})

describe("breaker: log lines", () => {
  it.scoped("one line per transition, with the reason and the cooldown", () =>
    Effect.gen(function*() {
      const { callAt, failAt, logs, probe } = yield* setup({ threshold: 2 })
      yield* failAt(0)
      yield* failAt(0)
      yield* callAt(100) // the probe fails
      probe.outcome = "succeed"
      yield* callAt(300)
      deepStrictEqual(logs, [
        "WARN cache-aside: circuit breaker opened (2 consecutive failures); store calls fail fast for 100 ms",
        "INFO cache-aside: circuit breaker half-open, probing the store",
        "WARN cache-aside: circuit breaker opened (the probe failed); store calls fail fast for 200 ms",
        "INFO cache-aside: circuit breaker half-open, probing the store",
        "INFO cache-aside: circuit breaker closed, store calls resume"
      ])
    }))
})
