/**
 * The stores' bound on `deletePattern` (`CacheStore.maxPatternBytes`) never refuses a pattern that
 * `invalidatePattern` accepts (1,024 bytes over user keys): escapes at most double a pattern's
 * bytes, and the key prefix comes on top. Worst cases at `invalidatePattern`'s bound, each a
 * character the translation escapes, run on the memory store; one byte more is refused by
 * `invalidatePattern` itself, before the store.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, CacheStore, MemoryCacheStore } from "../src/index.js"

const worst: ReadonlyArray<readonly [string, string]> = [
  ["a literal ]", "]".repeat(1024)],
  ["a literal ] after a star, with a ?", "*?" + "]".repeat(1022)],
  ["DLE", "*?" + "\u0010".repeat(1022)],
  ["lone surrogates", "*?" + "\uD800".repeat(340) + "aa"]
]

describe("CacheStore.maxPatternBytes and invalidatePattern", () => {
  it.scoped("every pattern at invalidatePattern's bound reaches the store and runs", () =>
    Effect.gen(function*() {
      const store = yield* MemoryCacheStore.make()
      const cache = yield* CacheAside.make({
        namespace: "a-long-namespace-name-for-the-prefix",
        key: (k: string) => k,
        schema: Schema.String,
        lookup: (k: string) => Effect.succeed(Option.some(k)),
        ttl: "1 hour"
      }).pipe(Effect.provideService(CacheStore.CacheStore, store))
      for (const [name, pattern] of worst) {
        const result = yield* Effect.either(cache.invalidatePattern(pattern))
        assert.isTrue(result._tag === "Right", `${name}: ${result._tag === "Left" ? result.left.message : ""}`)
        const longer = yield* Effect.flip(cache.invalidatePattern(pattern + "a"))
        assert.strictEqual(longer.operation, "invalidatePattern", name)
      }
    }))
})
