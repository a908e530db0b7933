import { MemoryCacheStore } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { describe, it, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { suite } from "./ReadPathSuite.js"
import { RedisServer } from "./utils/RedisServer.js"

describe("the read path on the memory store", () => {
  suite(it, MemoryCacheStore.layer())
})

describe("the read path on Redis", () => {
  layer(RedisServer.layer, { timeout: "30 seconds" })((it) => {
    suite(
      it,
      Layer.unwrapEffect(
        Effect.map(
          RedisServer,
          (server) => RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" })
        )
      )
    )
  })
})
