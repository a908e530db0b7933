/**
 * The read path's acceptance suite (test/CacheAsideSuite.ts) with a near cache on every cache
 * (`NearCache.layerDefault`), on the memory store with the memory bus and on Redis with
 * RedisCacheBus: the same behaviour as without it (test/CacheAside.test.ts runs it off).
 */
import { CacheBus, MemoryCacheStore, NearCache } from "@cache-aside/core"
import { RedisCacheBus } from "@cache-aside/redis"
import { describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { suite } from "./CacheAsideSuite.js"
import { RedisServer } from "./utils/RedisServer.js"

const near = NearCache.layerDefault({ maxEntries: 1000, maxBytes: 1024 * 1024, ttl: "1 minute" })

describe("CacheAside with a near cache, on the memory store", () => {
  suite(it, Layer.mergeAll(MemoryCacheStore.layer(), CacheBus.layerMemory, near))
})

describe("CacheAside with a near cache, on Redis", () => {
  layer(RedisServer.layer, { timeout: "30 seconds" })((it) => {
    suite(
      it,
      Layer.unwrapEffect(
        Effect.map(
          RedisServer,
          (server) =>
            Layer.merge(RedisCacheBus.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }), near)
        )
      )
    )
  })
})
