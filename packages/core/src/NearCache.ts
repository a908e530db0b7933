/**
 * The near cache (L1): decoded values kept in process memory in front of the store, opt-in per
 * cache with `CacheAside.make({ ..., nearCache: { maxEntries, maxBytes, ttl } })`.
 *
 * A hit answered from the near cache costs no store round trip and no decoding. What keeps it
 * correct:
 *
 * - **Bounds**: at most `maxEntries` entries and, when given, `maxBytes` approximate bytes (the
 *   size of the stored bytes); least recently used out first.
 * - **Expiry**: an entry lives until the store entry's logical expiry, and at most `ttl`; checked
 *   against Effect's `Clock` (so `TestClock` drives it).
 * - **This process**: `invalidate`, `set`, `invalidatePattern` and `invalidateAll` evict the
 *   process's own near cache before they return, and a read that raced them never puts what they
 *   removed back. A process never serves what it has itself invalidated.
 * - **Other processes**: the same operations publish on the `CacheBus` in context (a
 *   `RedisCacheBus` from `@cache-aside/redis`: Redis pub/sub, plus Redis client-side caching so a
 *   write to a key by any client evicts it everywhere). Propagation is asynchronous: other
 *   processes may serve the old value for the time a message takes (milliseconds on a LAN; measured
 *   in `test/NearCacheCoherence.test.ts`). A process that stalls (GC, a starved CPU) bypasses its
 *   near cache until it has read what its subscriber received: on Redis, staleness stays within
 *   about one bus `heartbeat`.
 * - **A lost bus**: when the bus connection drops, every near cache on it is flushed and bypassed
 *   until the connection is back (invalidations may have been missed meanwhile).
 *
 * `layerDefault(options)` turns a near cache on for every cache made under it (a cache's own
 * `nearCache` option, or `nearCache: false`, wins).
 *
 * Without a `CacheBus` in context, a near cache is coherent within its process only: use it so
 * only when one process uses the store, or when values may be stale for up to `ttl`.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"

/**
 * Options of a near cache.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheAside, CacheBus, MemoryCacheStore, Metrics } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* CacheAside.make({
 *     namespace: "user",
 *     key: (id: number) => String(id),
 *     schema: Schema.String,
 *     lookup: (id: number) => Effect.succeed(Option.some(`user ${id}`)),
 *     ttl: "1 hour",
 *     nearCache: { maxEntries: 10_000, maxBytes: 16 * 1024 * 1024, ttl: "1 minute" }
 *   })
 *   yield* users.get(1) // a miss: loaded, cached in the store and in the near cache
 *   return yield* users.get(1) // answered from process memory
 * }).pipe(
 *   Effect.scoped,
 *   Effect.provide(MemoryCacheStore.layer()),
 *   Effect.provide(CacheBus.layerMemory),
 *   Effect.provide(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export interface Options {
  /** Most entries held (a positive integer). */
  readonly maxEntries: number
  /** Most approximate bytes held (the stored size of each value); an entry larger than this is not kept. */
  readonly maxBytes?: number | undefined
  /** Longest an entry is kept (never past the store entry's own expiry). At least one millisecond. */
  readonly ttl: Duration.DurationInput
}

/**
 * The near cache options of caches that set none: `undefined` (no near cache) unless a
 * `layerDefault` is provided.
 *
 * @since 0.1.0
 */
export class Default extends Context.Reference<Default>()("@cache-aside/core/NearCache/Default", {
  defaultValue: (): Options | undefined => undefined
}) {}

/**
 * Gives every cache made under this layer a near cache with `options`, unless it sets its own
 * `nearCache` (or `nearCache: false`).
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Metrics, NearCache } from "@cache-aside/core"
 * import { RedisCacheBus } from "@cache-aside/redis"
 *
 * // RedisCacheBus.layer wraps its store in ResilientCacheStore, which needs Metrics
 * const Live = Layer.merge(
 *   RedisCacheBus.layer().pipe(Layer.provideMerge(Metrics.layer)),
 *   NearCache.layerDefault({ maxEntries: 10_000, ttl: "1 minute" })
 * )
 * ```
 *
 * @since 0.1.0
 */
export const layerDefault = (options: Options): Layer.Layer<Default> => Layer.succeed(Default, options)
