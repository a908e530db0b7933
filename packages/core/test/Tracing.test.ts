import { describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

/** A lookup that records the span it runs in (if any). */
const setup = Effect.gen(function*() {
  const seen: Array<string | undefined> = []
  const cache = yield* CacheAside.make({
    namespace: "traced",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup: (id: number) =>
      Effect.map(Effect.option(Effect.currentSpan), (span) => {
        seen.push(Option.getOrUndefined(Option.map(span, (s) => s.name)))
        return Option.some(`v${id}`)
      }),
    ttl: "1 minute"
  })
  return { cache, seen }
})

describe("tracing", () => {
  it.scoped("a traced caller gets a cache_aside.load span around the lookup; an untraced one pays for none", () =>
    Effect.gen(function*() {
      const { cache, seen } = yield* setup
      yield* cache.get(1)
      yield* cache.get(2).pipe(Effect.withSpan("request"))
      deepStrictEqual(seen, [undefined, "cache_aside.load"])
    }).pipe(Effect.provide(Services)))
})
