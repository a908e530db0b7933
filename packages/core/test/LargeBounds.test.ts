/**
 * An entry bound set far too high is an option mistake, not a reason to crash: `lru-cache`'s `max`
 * preallocates arrays of `max` slots when a cache is made (measured: 2.6 GB and 20 s for 10^8, a
 * fatal out-of-memory abort for 10^9). The memory store, the near cache and the decode memo keep
 * their entries through `internal/lru.ts`, whose memory follows what is held: with 10^9 as every
 * entry bound, a cache is made and used while the heap grows by a few megabytes at most (counted
 * from `process.memoryUsage()`, a bound, not a timing).
 */
import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, CacheBus, MemoryCacheStore, Metrics } from "../src/index.js"
import { Lru } from "../src/internal/lru.js"

const huge = 1_000_000_000
const heapBound = 32 * 1024 * 1024
const heapUsed = () => process.memoryUsage().heapUsed

describe("entry bounds far too high", () => {
  it.scoped("the memory store, the near cache and the decode memo with 10^9 entries: made and used in bounded memory", () =>
    Effect.gen(function*() {
      const before = heapUsed()
      const cache = yield* CacheAside.make({
        namespace: "huge",
        key: (id: number) => String(id),
        schema: Schema.Struct({ id: Schema.Number }),
        lookup: (id: number) => Effect.succeed(Option.some({ id })),
        ttl: "1 minute",
        decodeCacheSize: huge,
        nearCache: { maxEntries: huge, ttl: "1 minute" }
      })
      for (let id = 0; id < 50; id++) assertSome(yield* cache.get(id), { id })
      for (let id = 0; id < 50; id++) assertSome(yield* cache.get(id), { id })
      const metrics = yield* Metrics.Metrics
      assert.strictEqual((yield* metrics.snapshot("huge")).nearHits, 50, "the near cache answered the second round")
      assert.isBelow(heapUsed() - before, heapBound)
    }).pipe(
      Effect.provide(
        Layer.mergeAll(MemoryCacheStore.layer({ maxEntries: huge }), Metrics.layer, CacheBus.layerMemory)
      )
    ))

  it("an Lru keeps both bounds: entries, and size when given (the least recently used out first)", () => {
    const byEntries = new Lru<{ readonly n: number }>({ maxEntries: 3 })
    for (let i = 0; i < 10; i++) byEntries.set(`k${i}`, { n: i }, 1_000_000)
    deepStrictEqual(byEntries.keys(), ["k9", "k8", "k7"])
    const bySize = new Lru<{ readonly n: number }>({ maxEntries: 100, maxSize: 10 })
    bySize.set("a", { n: 1 }, 4)
    bySize.set("b", { n: 2 }, 4)
    bySize.get("a") // a becomes the most recently used
    bySize.set("c", { n: 3 }, 4) // 12 > 10: b goes
    deepStrictEqual(bySize.keys(), ["c", "a"])
    assert.strictEqual(bySize.calculatedSize, 8)
    const both = new Lru<{ readonly n: number }>({ maxEntries: 2, maxSize: 1000 })
    for (let i = 0; i < 5; i++) both.set(`k${i}`, { n: i }, 1)
    deepStrictEqual(both.keys(), ["k4", "k3"])
    bySize.set("big", { n: 4 }, 11) // larger than the size bound: not kept
    assert.isUndefined(bySize.peek("big"))
  })
})
