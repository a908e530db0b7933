/**
 * The store conformance suite, run once per implementation.
 */
import * as MemoryCacheStore from "@cache-aside/core/MemoryCacheStore"
import * as Metrics from "@cache-aside/core/Metrics"
import * as RedisCacheStore from "@cache-aside/redis/RedisCacheStore"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { suite } from "./CacheStoreConformance.js"
import { RedisServer } from "./utils/RedisServer.js"

suite("MemoryCacheStore", MemoryCacheStore.layer())

/** A Redis store over a `redis-server` started for this file. */
const redisStore = (options: { readonly keyPrefix?: string }) =>
  Layer.unwrapEffect(
    Effect.map(RedisServer, (server) =>
      RedisCacheStore.layer({ ...options, url: Redacted.make(server.url), commandTimeout: "2 seconds" }))
  ).pipe(Layer.provide([RedisServer.layer, Metrics.layer]))

suite("RedisCacheStore", redisStore({}))

suite("RedisCacheStore with a keyPrefix", redisStore({ keyPrefix: "app:[1]*:" }))
