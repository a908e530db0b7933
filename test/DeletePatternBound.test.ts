/**
 * The Redis store's own `deletePattern` bounds its pattern as `invalidatePattern` does: a caller of
 * the `CacheStore` service who passes a long pattern (SCAN MATCH costs pattern × key length per
 * key, and blocks every client meanwhile) gets `CacheUnavailable` (`replied: true`), and no `SCAN`
 * reaches Redis: counted with `INFO commandstats` on this file's own server, for the bare store and
 * for the default layer (wrapped in a `ResilientCacheStore`, which neither retries nor queues it).
 */
import { CacheStore, maxPatternBytes } from "@cache-aside/core/CacheStore"
import * as Metrics from "@cache-aside/core/Metrics"
import * as RedisCacheStore from "@cache-aside/redis/RedisCacheStore"
import { assert, describe, it } from "@effect/vitest"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { RedisServer } from "./utils/RedisServer.js"

const scans = Effect.flatMap(
  RedisServer,
  (server) => Effect.map(server.commandCalls, (calls) => calls.get("scan") ?? 0)
)

const storeOn = (resilience: false | undefined) =>
  Effect.flatMap(RedisServer, (server) =>
    Layer.build(
      RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "5 seconds", resilience }).pipe(
        Layer.provide(Metrics.layer)
      )
    ).pipe(Effect.map((context) => Effect.provide(CacheStore, context))))

describe("RedisCacheStore.deletePattern bounds its pattern", () => {
  for (const [name, resilience] of [["bare", false], ["with the resilient wrapper", undefined]] as const) {
    it.scoped(`a 1 MB pattern is refused, no SCAN sent (${name})`, () =>
      Effect.gen(function*() {
        const store = yield* yield* storeOn(resilience)
        yield* store.set("user:1", new Uint8Array([1]), Duration.minutes(1))
        const before = yield* scans
        for (const pattern of ["*a".repeat(500_000), `user:*${"b".repeat(maxPatternBytes)}`]) {
          const refused = yield* Effect.flip(store.deletePattern(pattern))
          assert.strictEqual(refused.operation, "deletePattern")
          assert.strictEqual(refused.replied, true)
          assert.include(refused.message, `more than the ${maxPatternBytes} allowed`)
        }
        assert.strictEqual((yield* scans) - before, 0, "a SCAN reached Redis")
        assert.isTrue((yield* store.get("user:1"))._tag === "Some")
        // a pattern within the bound is sent (the count sees it) and deletes
        assert.strictEqual(yield* store.deletePattern("user:*"), 1)
        assert.isAbove((yield* scans) - before, 0)
      }).pipe(Effect.provide(RedisServer.layer)))
  }
})
