/**
 * Redis-specific behaviour of the Redis store: a dead or hung Redis fails fast with
 * `CacheUnavailable` and never hangs startup or shutdown; caller-owned clients stay open; the
 * client's `keyPrefix` bounds pattern deletes. Each test starts its own `redis-server`.
 */
import { CacheStore, CacheUnavailable } from "@cache-aside/core/CacheStore"
import * as Metrics from "@cache-aside/core/Metrics"
import * as RedisCacheStore from "@cache-aside/redis/RedisCacheStore"
import * as RedisClient from "@cache-aside/redis/RedisClient"
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schedule from "effect/Schedule"
import * as Scope from "effect/Scope"
import * as TestServices from "effect/TestServices"
import { Redis } from "ioredis"
import { freePort, RedisServer } from "./utils/RedisServer.js"

const text = (value: string): Uint8Array => new TextEncoder().encode(value)

// Bounds against hangs, generous for a loaded machine, each named for what it bounds:
/** Building the layer with nothing listening: the connect timeout (2 s) and a little. */
const buildBound = 2_500
/** Twenty operations against a dead Redis: each fails at once (no offline queue), far below one command timeout (10 s). */
const failFastBound = 2_000
/** Five operations against a paused Redis: each gives up after the command timeout (200 ms), not after the pause. */
const hungBound = 5_000
/** Closing the scope: QUIT is bounded by one second, then the socket is dropped. */
const closeBound = 3_000
const long = Duration.minutes(5)

/** Builds a store layer into the current scope and returns the store. */
const buildStore = <E>(layer: Layer.Layer<CacheStore, E, Metrics.Metrics>) =>
  Effect.map(Layer.build(Layer.provide(layer, Metrics.layer)), (context) => Context.get(context, CacheStore))

/** Elapsed real time of an effect, in milliseconds. */
const timed = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const result = yield* self
    return [result, performance.now() - start] as const
  })

const assertUnavailable = (error: unknown): void => {
  assert.instanceOf(error, CacheUnavailable)
  assert.strictEqual((error as CacheUnavailable)._tag, "CacheUnavailable")
}

describe("RedisCacheStore", () => {
  it.scoped(
    "builds with nothing listening, then every operation fails fast with CacheUnavailable",
    () =>
      Effect.gen(function*() {
        const port = yield* freePort
        const [store, buildMillis] = yield* timed(
          buildStore(
            RedisCacheStore.layer({
              resilience: false,
              host: "127.0.0.1",
              port,
              connectTimeout: "2 seconds",
              // long enough that waiting for even one command timeout would break failFastBound
              commandTimeout: "10 seconds"
            })
          )
        )
        assert.isBelow(buildMillis, buildBound)

        const attempts = 20
        const [errors, millis] = yield* timed(
          Effect.forEach(Array.from({ length: attempts }), (_, i) => Effect.flip(store.get(`k${i}`)))
        )
        assert.strictEqual(errors.length, attempts)
        errors.forEach(assertUnavailable)
        // no command timeout was waited for: with the offline queue off, a dead Redis answers at once
        assert.isBelow(millis, failFastBound)

        assertUnavailable(yield* Effect.flip(store.getMany(["a", "b"])))
        assertUnavailable(yield* Effect.flip(store.set("a", text("v"), long)))
        assertUnavailable(yield* Effect.flip(store.delete(["a"])))
        assertUnavailable(yield* Effect.flip(store.deletePattern("a*")))
        // empty lists make no round-trip, so they succeed even with Redis down
        deepStrictEqual(yield* store.getMany([]), [])
        assert.strictEqual(yield* store.delete([]), 0)
      }),
    30_000
  )

  it.scoped("reconnects once Redis is back", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const store = yield* buildStore(RedisCacheStore.layer({ resilience: false, url: Redacted.make(server.url) }))
      yield* store.set("k", text("v"), long)
      yield* server.kill
      assertUnavailable(yield* Effect.flip(store.get("k")))
      yield* server.restart
      // the fresh server is empty; the client reconnects within its capped backoff (about 1s)
      const value = yield* store.get("k").pipe(
        Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 50 }),
        TestServices.provideLive
      )
      assert.isTrue(Option.isNone(value))
      yield* store.set("k", text("again"), long)
      assert.isTrue(Option.isSome(yield* store.get("k")))
    }), 30_000)

  it.scoped(
    "a paused (hung) Redis fails with CacheUnavailable after commandTimeout, then recovers",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const store = yield* buildStore(
          RedisCacheStore.layer({ resilience: false, url: Redacted.make(server.url), commandTimeout: "200 millis" })
        )
        yield* store.set("k", text("v"), long)
        yield* server.pause
        yield* Effect.gen(function*() {
          const [errors, millis] = yield* timed(
            Effect.all([
              Effect.flip(store.get("k")),
              Effect.flip(store.getMany(["k", "j"])),
              Effect.flip(store.set("j", text("w"), long)),
              Effect.flip(store.delete(["j"])),
              Effect.flip(store.deletePattern("*"))
            ], { concurrency: "unbounded" })
          )
          errors.forEach(assertUnavailable)
          assert.isBelow(millis, hungBound)
        }).pipe(Effect.ensuring(server.resume))
        const value = yield* store.get("k")
        deepStrictEqual(Array.from(Option.getOrThrow(value)), Array.from(text("v")))
      }),
    30_000
  )

  it.scoped("closing the scope with a paused Redis does not hang", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const scope = yield* Scope.make()
      const store = yield* buildStore(RedisCacheStore.layer({ resilience: false, url: Redacted.make(server.url) }))
        .pipe(
          Scope.extend(scope)
        )
      yield* store.set("k", text("v"), long)
      yield* server.pause
      const [, millis] = yield* timed(Scope.close(scope, Exit.void)).pipe(Effect.ensuring(server.resume))
      assert.isBelow(millis, closeBound)
    }), 30_000)

  it.scoped("closing the scope with Redis down does not hang", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const scope = yield* Scope.make()
      yield* buildStore(RedisCacheStore.layer({ resilience: false, host: "127.0.0.1", port })).pipe(Scope.extend(scope))
      const [, millis] = yield* timed(Scope.close(scope, Exit.void))
      assert.isBelow(millis, closeBound)
    }), 30_000)

  it.scoped("layerFromClient never closes the caller's client", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const client = yield* Effect.acquireRelease(
        Effect.sync(() => new Redis(server.url)),
        (client) => Effect.promise(() => client.quit())
      )
      yield* Effect.gen(function*() {
        const store = yield* buildStore(RedisCacheStore.layerFromClient(client, { resilience: false }))
        yield* store.set("k", text("v"), long)
      }).pipe(Effect.scoped)
      assert.strictEqual(client.status, "ready")
      assert.strictEqual(yield* Effect.promise(() => client.get("k")), "v")
    }), 30_000)

  it.scoped("the keyPrefix is added to keys and bounds deletePattern", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const url = Redacted.make(server.url)
      const plain = yield* buildStore(RedisCacheStore.layer({ resilience: false, url }))
      const prefixed = yield* buildStore(RedisCacheStore.layer({ resilience: false, url, keyPrefix: "app:" }))

      yield* prefixed.set("x1", text("1"), long)
      yield* plain.set("app:x2", text("2"), long)
      yield* plain.set("x3", text("3"), long)
      yield* plain.set("other:x4", text("4"), long)

      // in Redis itself (a raw connection, no client library): the prefixed store's key carries the prefix
      assert.strictEqual(yield* server.command("EXISTS", "app:x1"), ":1")
      assert.strictEqual(yield* server.command("EXISTS", "x1"), ":0")
      assert.isTrue(Option.isSome(yield* plain.get("app:x1")))
      assert.isTrue(Option.isSome(yield* prefixed.get("x2")))
      assert.isTrue(Option.isNone(yield* prefixed.get("x3")))

      assert.strictEqual(yield* prefixed.deletePattern("x*"), 2)
      assert.strictEqual(yield* server.command("EXISTS", "app:x1", "app:x2", "x3", "other:x4"), ":2")
      assert.isTrue(Option.isNone(yield* plain.get("app:x1")))
      assert.isTrue(Option.isNone(yield* plain.get("app:x2")))
      assert.isTrue(Option.isSome(yield* plain.get("x3")))
      assert.isTrue(Option.isSome(yield* plain.get("other:x4")))

      assert.strictEqual(yield* prefixed.delete(["x3", "other:x4"]), 0)
      assert.strictEqual(yield* plain.delete(["x3", "other:x4"]), 2)
    }), 30_000)

  it.scoped("layerConfig reads REDIS_URL and REDIS_KEY_PREFIX", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const store = yield* buildStore(
        RedisCacheStore.layerConfig.pipe(
          Layer.provide(Layer.setConfigProvider(
            ConfigProvider.fromMap(new Map([["REDIS_URL", server.url], ["REDIS_KEY_PREFIX", "cfg:"]]))
          )),
          Layer.orDie
        )
      )
      yield* store.set("k", text("v"), long)
      assert.strictEqual(yield* server.command("EXISTS", "cfg:k"), ":1")
    }), 30_000)

  it.scoped(
    "RedisClient's keyPrefix reaches Redis: every key it writes carries the prefix",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const client = yield* RedisClient.make({ url: Redacted.make(server.url), keyPrefix: "p:" })
        assert.strictEqual(client.keyPrefix, "p:")
        yield* client.setPx("k", text("v"), 60_000)
        // read with a raw connection: the key in Redis is the prefixed one, and only that one
        assert.strictEqual(yield* server.command("EXISTS", "p:k"), ":1")
        assert.strictEqual(yield* server.command("EXISTS", "k"), ":0")
        assert.strictEqual(yield* server.command("DBSIZE"), ":1")
      }),
    30_000
  )
})
