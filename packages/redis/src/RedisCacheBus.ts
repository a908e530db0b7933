/**
 * The `CacheBus` on Redis: keeps the near caches (L1) of every process coherent.
 *
 * - **Pub/sub**: `invalidate`, `set`, `invalidatePattern` and `invalidateAll` publish a small JSON
 *   message (sender's instance id, namespace, what changed) on the namespace's channel
 *   `cache-aside-bus:<keyPrefix><prefix>:<namespace>:`; each process evicts what it names and
 *   skips its own messages. Messages are untrusted: anything that does not decode is ignored.
 * - **Redis client-side caching**: once a near cache is on the bus, the data connection runs
 *   `CLIENT TRACKING on REDIRECT <subscriber id> NOLOOP` (re-enabled after every reconnect of
 *   either connection): Redis remembers the keys it reads, and a later write to one of them by
 *   *any* other client, even one that does not use this library, evicts it from every L1 holding
 *   it (an L1 holds only what its process read or filled). `NOLOOP` keeps this process's own
 *   writes from coming back, the fills' compare-and-set scripts included, so what a fill caches
 *   stays cached. Not `BCAST`: there Redis records a script's writes as made by the script's own
 *   client, and every fill came back. Details: `internal/tracking.ts`.
 * - **A lost connection**: when the subscriber or the data connection drops, or the subscriber
 *   misses a heartbeat (a paused server), every near cache on the bus is flushed and bypassed
 *   until both connections are back, subscribed and tracking (invalidations may have been missed).
 * - **Namespaces are let go**: a namespace is watched while at least one near cache of it is open
 *   (counted per namespace, released with the cache's scope, interruptions included). When its last
 *   one closes, its channel is unsubscribed; when no near cache is left, tracking is turned off. The
 *   namespaces still in use keep their channels and tracking untouched, and a namespace used again
 *   is subscribed (and tracking on) before its near cache answers anything.
 *
 * The bus needs a second connection (the subscriber) and, with Redis ACLs, these permissions in
 * addition to the store's minimal ACL (packages/redis/README.md):
 *
 *     +publish +subscribe +unsubscribe +ping +client|id +client|tracking &cache-aside-bus:* &__redis__:invalidate
 *
 * (`+publish`: invalidation messages; `+subscribe`, `+client|id`: the subscriber; `+unsubscribe`:
 * letting go of a namespace whose near caches all closed (without it the channel stays subscribed,
 * which costs traffic, not coherence); `+client|tracking`: client-side caching on the data
 * connection; `+ping`: the subscriber's heartbeat, without which the bus flaps; the two channels:
 * Redis 7 denies channels not listed). Optionally `+client|setname`: the subscriber names itself
 * `cache-aside-bus` in `CLIENT LIST`. `test/BusNamespaces.test.ts` runs the bus as a user with
 * exactly these, and without `+unsubscribe`. Client-side caching needs
 * Redis 6 or later. This module is, with `RedisClient.ts`, the only one that talks to ioredis
 * (through `internal/tracking.ts`).
 *
 * @since 0.1.0
 */
import * as CacheBus from "@cache-aside/core/CacheBus"
import { type CacheStore, InvalidStoreOptions } from "@cache-aside/core/CacheStore"
import type { Metrics } from "@cache-aside/core/Metrics"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import { randomUUID } from "node:crypto"
import * as internalOptions from "./internal/options.js"
import * as tracking from "./internal/tracking.js"
import * as validate from "./internal/validate.js"
import * as RedisCacheStore from "./RedisCacheStore.js"
import * as RedisClient from "./RedisClient.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /**
   * The subscriber connection is pinged every half of this, and a ping may take this long: a
   * server that stops answering (paused, hung) counts as a lost bus (flushed) after at most 1.5
   * times this. Near caches are also bypassed, not flushed, while nothing was heard from the
   * subscriber for this long (after this process stalled, until it has read what arrived
   * meanwhile). Default 1 second.
   */
  readonly heartbeat?: Duration.DurationInput | undefined
}

/** The heartbeat, validated: pings every half of it, so at least 2 ms, and within Node's longest timer. */
const heartbeatOf = (options: Options): Either.Either<Duration.Duration, string> => {
  const notAnObject = validate.notAnObject("bus options", options)
  if (notAnObject !== undefined) return Either.left(notAnObject)
  return validate.duration("bus.heartbeat", options.heartbeat ?? "1 second", 2, validate.maxTimerMillis)
}

/**
 * Makes a bus over the data connection of the `RedisClient` in context, with its own subscriber
 * connection, for the scope's lifetime. Fails only for invalid options (`InvalidStoreOptions`: a
 * `heartbeat` that is not a duration of 2 ms to about 24 days, or a key that misspells it; other
 * unknown keys are logged at WARN); while Redis is unreachable the bus is unhealthy (near caches
 * are bypassed). A `RedisClient` without an ioredis connection gives a bus that is never healthy.
 *
 * @example
 * ```ts
 * import { Effect, Redacted } from "effect"
 * import { RedisCacheBus, RedisClient } from "@cache-aside/redis"
 *
 * const bus = RedisCacheBus.make().pipe(
 *   Effect.provide(RedisClient.layer({ url: Redacted.make("redis://localhost:6379") }))
 * )
 * ```
 *
 * @since 0.1.0
 */
export const make = (
  options: Options = {}
): Effect.Effect<CacheBus.CacheBus["Type"], InvalidStoreOptions, RedisClient.RedisClient | Scope.Scope> =>
  Effect.gen(function*() {
    const heartbeat = heartbeatOf(options)
    if (Either.isLeft(heartbeat)) return yield* new InvalidStoreOptions({ message: `RedisCacheBus: ${heartbeat.left}` })
    yield* internalOptions.checkNames("RedisCacheBus.make", options, internalOptions.busShape, "bus")
    const client = yield* RedisClient.RedisClient
    const instanceId = randomUUID()
    const registry = new CacheBus.Registry()
    const connection = client.connection
    if (connection === undefined) {
      yield* Effect.logWarning("cache-aside: the Redis client has no ioredis connection; near caches stay bypassed")
      return CacheBus.CacheBus.of({
        instanceId,
        healthy: () => false,
        publish: () => Effect.void,
        subscribe: () => Effect.void
      })
    }
    const tracker = yield* tracking.make(connection, {
      onMessage: (namespace, payload) => {
        // too large to read (see `maxMessageBytes`): whatever it named may be stale, so all of it is
        if (payload === undefined) return registry.deliver(namespace, { _tag: "All" })
        const message = CacheBus.decodeMessage(payload)
        if (message === undefined || message.sender === instanceId || message.namespace !== namespace) return
        registry.deliver(namespace, message.invalidation)
      },
      onKeys: (keys) => {
        if (keys !== null) return registry.deliverKeys(keys)
        for (const namespace of registry.namespaces()) registry.deliver(namespace, { _tag: "All" })
      },
      onHealth: () => registry.flushAll()
    }, { heartbeat: heartbeat.right })
    return CacheBus.CacheBus.of({
      instanceId,
      healthy: tracker.healthy,
      publish: (namespace, invalidation) =>
        Effect.flatMap(
          // this process's other caches of the namespace first, synchronously; then the others
          Effect.zipRight(
            Effect.sync(() => registry.deliver(namespace, invalidation)),
            tracker.publish(namespace, CacheBus.encodeMessage({ sender: instanceId, namespace, invalidation }))
          ),
          (sent) =>
            sent ? Effect.void : Effect.logDebug("cache-aside: invalidation not published (the bus is unreachable)")
        ),
      subscribe: (namespace, subscriber) =>
        Effect.zipRight(
          Effect.acquireRelease(
            Effect.sync(() => registry.add(namespace, subscriber)),
            (remove) => Effect.sync(remove)
          ),
          tracker.watch(namespace)
        )
    })
  })

/**
 * The bus over the `RedisClient` in context (sharing its data connection with the store).
 *
 * `RedisCacheStore.layerWithClient` is the bare store: no circuit breaker, no invalidation queue (an
 * `invalidate` while Redis is down fails with `CacheUnavailable`), no retries, and no time limit
 * but the client's own. Wrap it in `ResilientCacheStore.layer`, as `layer` does; the wrapper passes
 * the bus through and needs `Metrics`.
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { Metrics, ResilientCacheStore } from "@cache-aside/core"
 * import { RedisCacheBus, RedisCacheStore, RedisClient } from "@cache-aside/redis"
 *
 * const Live = ResilientCacheStore.layer(Layer.merge(RedisCacheStore.layerWithClient, RedisCacheBus.layerWithClient()))
 *   .pipe(
 *     Layer.provide(RedisClient.layer({ url: Redacted.make("redis://localhost:6379") })),
 *     Layer.provideMerge(Metrics.layer)
 *   )
 * ```
 *
 * @since 0.1.0
 */
export const layerWithClient = (
  options: Options = {}
): Layer.Layer<CacheBus.CacheBus, InvalidStoreOptions, RedisClient.RedisClient> =>
  Layer.scoped(CacheBus.CacheBus, make(options))

/**
 * The Redis store and its bus over one client owned by the layer: what an application with near
 * caches on Redis provides. The store is wrapped like `RedisCacheStore.layer` (resilience).
 *
 * @example
 * ```ts
 * import { Layer, Redacted } from "effect"
 * import { Metrics } from "@cache-aside/core"
 * import { RedisCacheBus } from "@cache-aside/redis"
 *
 * const Live = RedisCacheBus.layer({ url: Redacted.make("redis://localhost:6379") }).pipe(
 *   Layer.provideMerge(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export const layer = (
  options: RedisCacheStore.Options & { readonly bus?: Options | undefined } = {}
): Layer.Layer<CacheStore | CacheBus.CacheBus, InvalidStoreOptions, Metrics> =>
  RedisCacheStore.resilientOnClient(
    "RedisCacheBus",
    options,
    // the bus gets its own options only: `resilientOnClient` has checked (and logged) the rest
    Layer.suspend(() =>
      Layer.merge(
        RedisCacheStore.layerWithClient,
        layerWithClient(internalOptions.onlyKnown(options.bus, internalOptions.busShape))
      )
    ),
    internalOptions.busLayerShape
  )

/**
 * The Redis store and its bus over one client configured from `Config` (validated: invalid values
 * are a `ConfigError`), wrapped like `layer`.
 *
 * @example
 * ```ts
 * import { Config, Layer } from "effect"
 * import { Metrics } from "@cache-aside/core"
 * import { RedisCacheBus } from "@cache-aside/redis"
 *
 * // the resilient wrapper of the store needs Metrics
 * const Live = RedisCacheBus.layerFromConfig({ url: Config.redacted("CACHE_REDIS_URL") }).pipe(
 *   Layer.provideMerge(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export const layerFromConfig = (
  config: Config.Config.Wrap<RedisClient.Options>,
  options: Pick<RedisCacheStore.Options, "resilience"> & { readonly bus?: Options | undefined } = {}
): Layer.Layer<CacheStore | CacheBus.CacheBus, ConfigError.ConfigError | InvalidStoreOptions, Metrics> =>
  Layer.unwrapEffect(Effect.map(RedisClient.validatedConfig(config), (client) => layer({ ...client, ...options })))

/**
 * The Redis store and its bus over one client configured from the environment (the variables of
 * `RedisClient.config`: `REDIS_URL`, `REDIS_USERNAME`, `REDIS_PASSWORD`, ...): what an application
 * with near caches on Redis provides.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Metrics } from "@cache-aside/core"
 * import { RedisCacheBus } from "@cache-aside/redis"
 *
 * const Live = RedisCacheBus.layerConfig.pipe(Layer.provideMerge(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<
  CacheStore | CacheBus.CacheBus,
  ConfigError.ConfigError | InvalidStoreOptions,
  Metrics
> = layerFromConfig(RedisClient.config)
