import { assert, describe, it } from "@effect/vitest"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

describe("single flight", () => {
  it.effect("an interrupted leader: its joiners retry by themselves; an interrupted joiner leaves the others alone", () =>
    Effect.gen(function*() {
      let calls = 0
      const first = yield* Deferred.make<void>()
      const gate = yield* Deferred.make<void>()
      const cache = yield* CacheAside.make({
        namespace: "flights",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: (id: number) =>
          Effect.gen(function*() {
            calls++
            if (calls === 1) {
              yield* Deferred.succeed(first, undefined)
              yield* Effect.never // the first load never finishes: its fiber will be interrupted
            }
            yield* Deferred.await(gate)
            return Option.some(`v${id}`)
          }),
        ttl: "1 minute"
      })
      const leader = yield* Effect.fork(cache.get(1))
      yield* Deferred.await(first)
      const joiners = yield* Effect.forEach(Array.from({ length: 5 }), () => Effect.fork(cache.get(1)))
      const quitter = yield* Effect.fork(cache.get(1))
      yield* Effect.yieldNow()
      yield* Fiber.interrupt(quitter)
      yield* Fiber.interrupt(leader)
      yield* Effect.yieldNow()
      yield* Deferred.succeed(gate, undefined)
      const answers = yield* Effect.forEach(joiners, Fiber.join)
      assert.isTrue(answers.every((answer) => Option.getOrUndefined(answer) === "v1"))
      assert.strictEqual(calls, 2, "the joiners retried as one new flight")
      const metrics = yield* Metrics.Metrics
      assert.isAtLeast((yield* metrics.snapshot("flights")).coalesced, 5)
    }).pipe(Effect.provide(Services)))
})
