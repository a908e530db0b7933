/**
 * `RedisCacheBus.layerConfig`: the store and the near-cache bus from the environment, validated like
 * `RedisCacheStore.layerConfig` (a bad value is a ConfigError, never a defect), and working end to
 * end on a real redis-server: a near cache in one process is evicted by another's invalidation.
 */
import { CacheAside, Metrics } from "@cache-aside/core"
import { RedisCacheBus } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import { Cause, ConfigError, ConfigProvider, Context, Effect, Exit, Layer, Option, Redacted, Schema } from "effect"
import { RedisServer } from "./utils/RedisServer.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

const live = Layer.provideMerge(RedisCacheBus.layerConfig, Metrics.layer)

describe("RedisCacheBus.layerConfig", () => {
  it.scoped("a bad variable is a ConfigError that does not show the password", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(Layer.build(live)).pipe(
        withEnv({ REDIS_URL: "redis://user:hunter2-secret@localhost:99999" })
      )
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        const failure = Cause.failureOption(exit.cause)
        assert.isTrue(Option.isSome(failure) && ConfigError.isConfigError(failure.value))
        assert.notInclude(Cause.pretty(exit.cause), "hunter2-secret")
      }
    }))

  it.scopedLive("store and bus from REDIS_URL: one process's invalidation evicts another's near cache", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      let version = "v1"
      const make = Effect.gen(function*() {
        const context = yield* Layer.build(live).pipe(withEnv({ REDIS_URL: server.url }))
        return yield* CacheAside.make({
          namespace: "bus-config",
          key: String,
          schema: Schema.String,
          lookup: (_: number) => Effect.sync(() => Option.some(version)),
          ttl: "1 hour",
          nearCache: { maxEntries: 100, ttl: "1 hour" }
        }).pipe(Effect.provide(context))
      })
      const a = yield* make
      const b = yield* make
      assertSome(yield* a.get(1), "v1")
      assertSome(yield* b.get(1), "v1") // now in b's near cache
      version = "v2"
      yield* a.invalidate(1)
      // b's near cache is evicted by the bus (asynchronously): poll, bounded
      let answer: Option.Option<string> = Option.none()
      for (let i = 0; i < 200; i++) {
        answer = yield* b.get(1)
        if (Option.isSome(answer) && answer.value === "v2") break
        yield* Effect.sleep("10 millis")
      }
      assertSome(answer, "v2")
    }))

  it.scopedLive("RedisCacheBus.layer names its store as RedisCacheStore.layer does: the wrapper's counts are under that name", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const context = yield* Layer.build(
        Layer.provideMerge(
          RedisCacheBus.layer({ url: Redacted.make(server.url), name: "sessions", commandTimeout: "100 millis" }),
          Metrics.layer
        )
      )
      const cache = yield* CacheAside.make({
        namespace: "named",
        key: String,
        schema: Schema.String,
        lookup: (_: number) => Effect.succeed(Option.some("row")),
        ttl: "1 hour"
      }).pipe(Effect.provide(context))
      assertSome(yield* cache.get(1), "row")
      yield* server.pause
      for (let i = 0; i < 3; i++) assertSome(yield* cache.get(1), "row") // from the lookup
      yield* server.resume
      const metrics = Context.get(context, Metrics.Metrics)
      assert.isAtLeast((yield* metrics.storeSnapshot("sessions")).timeouts, 1, "counted under the store's name")
      assert.strictEqual((yield* metrics.storeSnapshot("default")).timeouts, 0)
    }))
})
