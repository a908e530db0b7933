/**
 * The `CacheStore` port on Redis, through the `RedisClient` service. Values are stored as raw
 * bytes with `SET key value PX ttl`; pattern deletes walk the key space with `SCAN` and remove
 * keys with `UNLINK` in batches (never `KEYS`, which blocks the server).
 *
 * @since 0.1.0
 */
import { CacheStore, CacheUnavailable, InvalidStoreOptions, patternRefusal } from "@cache-aside/core/CacheStore"
import * as Glob from "@cache-aside/core/Glob"
import type { Metrics } from "@cache-aside/core/Metrics"
import * as ResilientCacheStore from "@cache-aside/core/ResilientCacheStore"
import * as Config from "effect/Config"
import * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Crypto from "node:crypto"
import * as internalOptions from "./internal/options.js"
import * as validate from "./internal/validate.js"
import * as RedisClient from "./RedisClient.js"

/**
 * SHA-1 of the bytes a compare-and-set or compare-and-delete expects (the script compares hashes):
 * one-shot `crypto.hash` (Node 20.12+; the packages need 20.19), which allocates no `Hash` stream
 * per call as `createHash` does (about 1 KiB and 2 % of a miss's CPU).
 */
const sha1 = (bytes: Uint8Array): string => Crypto.hash("sha1", bytes, "hex")

const toMillis = (ttl: Duration.Duration): number => Math.max(1, Math.ceil(Duration.toMillis(ttl)))

/** Keys asked per `SCAN` step. */
const scanCount = 1000
/** Most keys per `UNLINK`. */
const unlinkBatch = 1000

/**
 * Makes a Redis store on the `RedisClient` in context. Keys are passed to the client as they are
 * (the client's `keyPrefix`, if any, is added by the client); `deletePattern` matches the pattern
 * under the client's `keyPrefix` only, and refuses a pattern longer than
 * `CacheStore.maxPatternBytes` (as every store does) without sending anything.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { RedisCacheStore, RedisClient } from "@cache-aside/redis"
 *
 * const store = RedisCacheStore.make.pipe(
 *   Effect.provide(RedisClient.layer({ url: Redacted.make("redis://localhost:6379") }))
 * )
 * ```
 *
 * @since 0.1.0
 */
export const make: Effect.Effect<CacheStore["Type"], never, RedisClient.RedisClient> = Effect.map(
  RedisClient.RedisClient,
  (redis) => {
    const prefix = redis.keyPrefix
    const escapedPrefix = Glob.escape(prefix)

    const unlinkAll = (keys: ReadonlyArray<string>): Effect.Effect<number, CacheUnavailable> => {
      if (keys.length <= unlinkBatch) return redis.unlink(keys)
      const batches: Array<ReadonlyArray<string>> = []
      for (let i = 0; i < keys.length; i += unlinkBatch) batches.push(keys.slice(i, i + unlinkBatch))
      return Effect.forEach(batches, redis.unlink, { concurrency: 4 }).pipe(
        Effect.map((counts) => counts.reduce((a, b) => a + b, 0))
      )
    }

    const walk = (pattern: string): Effect.Effect<number, CacheUnavailable> =>
      Effect.gen(function*() {
        const match = escapedPrefix + pattern
        let cursor = "0"
        let count = 0
        do {
          const [next, found] = yield* redis.scan(cursor, match, scanCount)
          cursor = next
          if (found.length > 0) {
            // SCAN returns keys with the client's prefix, which the client adds again on UNLINK.
            const keys = prefix === "" ? found : found.map((key) => key.slice(prefix.length))
            count += yield* unlinkAll(keys)
          }
        } while (cursor !== "0")
        return count
      }).pipe(
        // one operation name for the whole walk; an error reply (OOM, READONLY) keeps `replied`, so
        // it does not count towards opening the circuit breaker
        Effect.mapError((error) =>
          new CacheUnavailable({ operation: "deletePattern", cause: error.cause, replied: error.replied })
        )
      )

    // a pattern too long to match cheaply (SCAN MATCH costs pattern × key length per key, and blocks
    // every other client meanwhile) is refused as the memory store refuses it: no SCAN is sent
    const deletePattern = (pattern: string): Effect.Effect<number, CacheUnavailable> =>
      Effect.suspend(() => {
        const refused = patternRefusal(pattern)
        return refused === undefined ? walk(pattern) : Effect.fail(refused)
      })

    return CacheStore.of({
      get: redis.getBuffer,
      getOrLease: (key, lease, ttl) => redis.getOrLeaseBuffer(key, lease, toMillis(ttl)),
      getMany: redis.mgetBuffer,
      set: (key, value, ttl) => redis.setPx(key, value, toMillis(ttl)),
      setIfAbsent: (key, value, ttl) => redis.setNxPx(key, value, toMillis(ttl)),
      compareAndSet: (key, expected, value, ttl) => redis.compareAndSetPx(key, sha1(expected), value, toMillis(ttl)),
      compareAndDelete: (key, expected) => redis.compareAndDelete(key, sha1(expected)),
      delete: unlinkAll,
      deletePattern
    })
  }
)

/**
 * The store over the `RedisClient` in context, for a client built elsewhere (for example one
 * shared with other Redis services, or `RedisClient.layerFromClient` over a caller-owned client).
 *
 * This is the bare store, unlike `layer` and the other store layers: no circuit breaker, no
 * invalidation queue (an `invalidate` while Redis is down fails with `CacheUnavailable`), no
 * retries, and no time limit but the client's own. Wrap it in `ResilientCacheStore.layer` (which
 * needs `Metrics`), as below.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Redis } from "ioredis"
 * import { Metrics, ResilientCacheStore } from "@cache-aside/core"
 * import { RedisCacheStore, RedisClient } from "@cache-aside/redis"
 *
 * // over your client, new Redis(url): closed by the caller, never by the layer
 * const StoreLive = (redis: Redis) =>
 *   ResilientCacheStore.layer(RedisCacheStore.layerWithClient).pipe(
 *     Layer.provide(RedisClient.layerFromClient(redis)),
 *     Layer.provideMerge(Metrics.layer)
 *   )
 * ```
 *
 * @since 0.1.0
 */
export const layerWithClient: Layer.Layer<CacheStore, never, RedisClient.RedisClient> = Layer.effect(
  CacheStore,
  make
)

/**
 * Options of the Redis store layers: the connection (`RedisClient.Options`, `maxEntryBytes`
 * included), and `resilience`: the `ResilientCacheStore` options (circuit breaker, queued
 * invalidations, retries) that wrap the store by default, with its operation timeout set to the
 * `commandTimeout`. `false` turns the wrapper off (the bare store still fails fast with
 * `CacheUnavailable`).
 *
 * @since 0.1.0
 */
export interface Options extends RedisClient.Options {
  readonly resilience?: ResilientCacheStore.Options | false | undefined
}

/**
 * Wraps the bare store in a `ResilientCacheStore`. The wrapper adds no timer of its own only when
 * the client really enforces a time limit on every command (`clientTimeout`): a caller-built client
 * without a finite `commandTimeout` gets the wrapper's timer, so a hung Redis still fails calls and
 * opens the breaker.
 */
const resilient = <ROut, E, R>(
  bare: Layer.Layer<CacheStore | ROut, E, R>,
  resilience: ResilientCacheStore.Options | false | undefined,
  name: string,
  clientTimeout: Option.Option<Duration.Duration>
): Layer.Layer<CacheStore | ROut, E | InvalidStoreOptions, R | Metrics> =>
  resilience === false
    ? bare
    : ResilientCacheStore.layer(bare, {
      name,
      timeout: Option.getOrElse(clientTimeout, () => RedisClient.defaultCommandTimeout),
      storeEnforcesTimeout: Option.isSome(clientTimeout) && resilience?.timeout === undefined,
      ...resilience
    })

const storeName = (
  options: { readonly name?: string | undefined; readonly resilience?: unknown }
): string | undefined => {
  if (options.name !== undefined) return options.name
  const resilience = options.resilience
  if (typeof resilience === "object" && resilience !== null && "name" in resilience) {
    const name = (resilience as { readonly name?: unknown }).name
    if (typeof name === "string") return name
  }
  return undefined
}

/**
 * The store over a client owned by the layer (see `RedisClient.Options` for the defaults),
 * wrapped in a `ResilientCacheStore` unless `resilience: false`. Invalid options (a port out of
 * range, a non-finite timeout, a malformed URL, a TLS key that does not load, ...) fail the layer
 * with `InvalidStoreOptions`; Redis being down does not.
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { Metrics } from "@cache-aside/core"
 * import { RedisCacheStore } from "@cache-aside/redis"
 *
 * const StoreLive = RedisCacheStore.layer({ url: Redacted.make("redis://localhost:6379"), keyPrefix: "app:" }).pipe(
 *   Layer.provideMerge(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<CacheStore, InvalidStoreOptions, Metrics> =>
  resilientOnClient("RedisCacheStore", options, layerWithClient, internalOptions.storeShape)

/**
 * What `layer` builds, over any layer of the store (and more, the bus's) on the client `options`
 * configure: options checked before anything connects (a typed `InvalidStoreOptions` naming
 * `what`; `shape` lists the option names, a misspelled one fails, other unknown keys are logged
 * once), one client named as the store, and the store wrapped in a `ResilientCacheStore` of that
 * name unless `resilience` is `false`. `RedisCacheBus.layer` builds the same way.
 *
 * @internal
 */
export const resilientOnClient = <ROut, E>(
  what: string,
  options: Options & { readonly bus?: unknown },
  onClient: Layer.Layer<CacheStore | ROut, E, RedisClient.RedisClient>,
  shape: internalOptions.Shape
): Layer.Layer<CacheStore | ROut, E | InvalidStoreOptions, Metrics> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    // read field by field, `null` or a string where an object goes would be a TypeError (a defect)
    const notAnObject = validate.objectsIn(options)
    if (notAnObject !== undefined) {
      return yield* new InvalidStoreOptions({ message: `${what}: ${notAnObject}` })
    }
    yield* internalOptions.checkNames(`${what}.layer`, options, shape)
    const name = storeName(options)
    const resolved = internalOptions.resolve({ ...options, name })
    if (Either.isLeft(resolved)) {
      return yield* new InvalidStoreOptions({ message: `${what}: ${resolved.left}` })
    }
    const clientTimeout = internalOptions.ownTimeout(resolved.right.redis.commandTimeout)
    // the client and the wrapper get their own options only: they do not warn again
    const client = internalOptions.onlyKnown(options, internalOptions.clientShape)
    const bare = Layer.provide(onClient, RedisClient.layer({ ...client, name: resolved.right.name }))
    const resilience = internalOptions.onlyKnown(options.resilience, internalOptions.resilienceShape)
    return resilient(bare, resilience, resolved.right.name, clientTimeout)
  }))

/**
 * The store over a client configured from `Config` (wrapped like `layer`). Invalid values are a
 * `ConfigError`.
 *
 * @example
 * ```ts
 * import { Config, Layer } from "effect"
 * import { Metrics } from "@cache-aside/core"
 * import { RedisCacheStore } from "@cache-aside/redis"
 *
 * // the resilient wrapper needs Metrics
 * const StoreLive = RedisCacheStore.layerFromConfig({ url: Config.redacted("CACHE_REDIS_URL") }).pipe(
 *   Layer.provideMerge(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export const layerFromConfig = (
  config: Config.Config.Wrap<RedisClient.Options>,
  options: Pick<Options, "resilience"> = {}
): Layer.Layer<CacheStore, ConfigError.ConfigError | InvalidStoreOptions, Metrics> =>
  Layer.unwrapEffect(Effect.map(RedisClient.validatedConfig(config), (client) => layer({ ...client, ...options })))

/**
 * The store over a client configured from the environment (see `RedisClient.config`: `REDIS_URL`,
 * `REDIS_USERNAME`, `REDIS_PASSWORD`, `REDIS_DB`, `REDIS_KEY_PREFIX`, `REDIS_COMMAND_TIMEOUT`,
 * `REDIS_CONNECT_TIMEOUT`, `REDIS_MAX_ENTRY_BYTES` and the `REDIS_TLS_*` variables), wrapped like
 * `layer`.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { Metrics } from "@cache-aside/core"
 * import { RedisCacheStore } from "@cache-aside/redis"
 *
 * const StoreLive = RedisCacheStore.layerConfig.pipe(Layer.provideMerge(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<CacheStore, ConfigError.ConfigError | InvalidStoreOptions, Metrics> =
  layerFromConfig(RedisClient.config)

/**
 * Options of `layerFromClient`: `resilience` as in `Options`, and the store's `maxEntryBytes` and
 * `name`. The connection settings are the client's own.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis"
 * import { RedisCacheStore } from "@cache-aside/redis"
 *
 * const StoreLive = (redis: Redis) =>
 *   RedisCacheStore.layerFromClient(redis, { maxEntryBytes: 1024 * 1024, resilience: { name: "main" } })
 * ```
 *
 * @since 0.1.0
 */
export interface FromClientOptions extends RedisClient.FromClientOptions {
  readonly resilience?: ResilientCacheStore.Options | false | undefined
}

/**
 * The store over a client the caller owns (never closed by the layer), wrapped like `layer`. A
 * client built without a finite `commandTimeout` (the ioredis default) has no time limit of its
 * own: the wrapper then bounds every call (250 millis unless `resilience.timeout` says otherwise),
 * so a hung Redis still falls back and opens the breaker.
 *
 * @example
 * ```ts
 * import { Redis } from "ioredis"
 * import { RedisCacheStore } from "@cache-aside/redis"
 *
 * // over your client: new Redis("redis://localhost:6379")
 * const StoreLive = (redis: Redis) => RedisCacheStore.layerFromClient(redis)
 * ```
 *
 * @since 0.1.0
 */
export const layerFromClient = (
  client: RedisClient.IORedis,
  options: FromClientOptions = {}
): Layer.Layer<CacheStore, InvalidStoreOptions, Metrics> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const notAnObject = validate.objectsIn(options)
    if (notAnObject !== undefined) {
      return yield* new InvalidStoreOptions({ message: `RedisCacheStore: ${notAnObject}` })
    }
    yield* internalOptions.checkNames("RedisCacheStore.layerFromClient", options, internalOptions.storeFromClientShape)
    const known = internalOptions.onlyKnown(options, internalOptions.storeFromClientShape)
    const name = storeName(known) ?? "default"
    return resilient(
      Layer.provide(layerWithClient, RedisClient.layerFromClient(client, { maxEntryBytes: known.maxEntryBytes, name })),
      known.resilience,
      name,
      internalOptions.ownTimeout(client.options.commandTimeout)
    )
  }))
