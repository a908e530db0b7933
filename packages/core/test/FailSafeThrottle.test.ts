/**
 * Fail-safe never serves a value past `maxStale`, however many throttles chain: each throttle
 * rewrite carries the original stale deadline (issue 8, defect 10; found by a mutation survivor test).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

const Memory = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

describe("fail-safe throttle", () => {
  it.scoped("chained throttles never serve a stale value past expiry + maxStale", () =>
    Effect.gen(function*() {
      let loads = 0
      let failing = false
      const cache = yield* CacheAside.make({
        namespace: "throttle",
        key: (id: number) => String(id),
        schema: Schema.String,
        ttl: "1 minute",
        jitter: 0,
        failSafe: { maxStale: "1 minute", throttle: "10 seconds" },
        lookup: (_: number) =>
          Effect.suspend(() => {
            loads++
            return failing ? Effect.fail("database down" as const) : Effect.succeed(Option.some(`v${loads}`))
          })
      })
      yield* cache.get(1) // cached at t = 0: fresh until 60 s, servable by fail-safe until 120 s
      failing = true
      const served: Array<number> = []
      const failed: Array<number> = []
      yield* TestClock.adjust("50 seconds")
      for (let t = 61; t <= 600; t += 11) {
        yield* TestClock.adjust("11 seconds")
        const exit = yield* Effect.exit(cache.get(1))
        ;(Exit.isSuccess(exit) ? served : failed).push(t)
      }
      assert.isAbove(served.length, 0, "the stale value is served while within maxStale")
      assert.isTrue(served.every((t) => t < 120), `served past expiry + maxStale (120 s) at ${served.join(", ")}`)
      assert.isTrue(failed.length > 0 && failed.every((t) => t >= 120), `failed at ${failed.join(", ")}`)
    }).pipe(Effect.provide(Memory)))
})
