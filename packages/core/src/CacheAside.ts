/**
 * The cache-aside read path: look the key up in the cache; on a hit return it; on a miss load it
 * from the data store, store it with a time-to-live, and return it. Writes invalidate.
 *
 * Every fill after a load is protected by a lease ("Scaling Memcache at Facebook", NSDI 2013,
 * 3.2.1): a miss puts a placeholder with a random token under the key (`SET NX PX`), and the fill
 * is a compare-and-set that only writes while the placeholder is still there. An invalidation
 * deletes the placeholder, so a load that raced it never caches its older result. By default,
 * readers that find another process's lease wait for its fill (bounded by `lock.wait`), so a cold
 * key costs one lookup per fleet.
 *
 * The machinery lives in `internal/` (one module per concept: options, keys, entry, flight, lease,
 * lookup, refresh, batch, and the impl with the decision table), the way Effect keeps `Cache.ts`
 * thin over `internal/cache.ts`.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FiberSet from "effect/FiberSet"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import * as CacheBus from "./CacheBus.js"
import { CacheStore, CacheUnavailable, mapOperations } from "./CacheStore.js"
import type * as Codec from "./Codec.js"
import type { DataSource } from "./DataSource.js"
import { CacheAsideImpl } from "./internal/cacheAside.js"
import { NearCache as NearCacheImpl } from "./internal/nearCache.js"
import * as options_ from "./internal/options.js"
import * as validate from "./internal/validate.js"
import * as Metrics from "./Metrics.js"
import * as NearCache from "./NearCache.js"

/**
 * The lookup time limits (see `Options.lookupTimeout`).
 *
 * @since 0.1.0
 */
export interface LookupTimeouts {
  readonly soft?: Duration.DurationInput | undefined
  readonly hard?: Duration.DurationInput | undefined
}

/**
 * @since 0.1.0
 */
export interface Options<K, A, I, E, R, T extends LookupTimeouts | undefined = LookupTimeouts | undefined> {
  /** Groups the keys of one kind of value; `invalidateAll` clears it. Must not contain `:`, control characters or lone surrogates. */
  readonly namespace: string
  /** Turns a lookup key into the cache key's last part. Any text is safe (ill-formed UTF-16 too). */
  readonly key: (key: K) => string
  /** Encodes and decodes cached values; its encoded side must be JSON-compatible. */
  readonly schema: Schema.Schema<A, I, never>
  /** Loads a value from the data store; `None` means "not found". A function or a `DataSource`. */
  readonly lookup: ((key: K) => Effect.Effect<Option.Option<A>, E, R>) | DataSource<K, A, E, R>
  /**
   * How long a value stays fresh: a duration (at least 1 ms, finite, at most 2^46 ms), or a
   * function of the value. A function's zero or negative result means "do not cache"; an invalid
   * one (NaN, infinite, too long) is not cached either, and is counted (`ttlErrors`) and logged once.
   */
  readonly ttl: Duration.DurationInput | ((value: A) => Duration.DurationInput)
  /** How long a "not found" stays cached. Default: the TTL, at most one minute. Zero turns null caching off. */
  readonly negativeTtl?: Duration.DurationInput | undefined
  /** Random fraction (0 to 1) taken off each TTL so keys written together do not expire together. Default 0.1. */
  readonly jitter?: number | undefined
  /** Part of every key; bump it when the value's shape changes. No `:`, control characters or lone surrogates. Default `"1"`. */
  readonly version?: string | undefined
  /** First part of every key. No `:`, control characters or lone surrogates (so no two caches' keys overlap). Default `"cache"`. */
  readonly prefix?: string | undefined
  /** Entries larger than this many bytes (as JSON) are gzip-compressed. Default 2048; `false` never compresses. */
  readonly compressAbove?: number | false | undefined
  /**
   * The largest entry, in bytes of JSON, that is cached or decoded (gunzip stops past it): a larger
   * value is not cached, a larger stored entry is a corrupt miss. Default 16 MiB.
   */
  readonly maxEntryBytes?: number | undefined
  /**
   * How long a lease (the placeholder a loader puts under a missing key) lives: the longest a load
   * is expected to take. A holder that dies leaves a lease that expires after this. Default 10 seconds.
   */
  readonly leaseTtl?: Duration.DurationInput | undefined
  /**
   * The distributed stampede lock, on by default: a reader that finds another process loading the
   * key (its lease) waits for that fill, polling every `poll`, instead of loading too. After `wait`
   * (wall-clock time, whatever `poll` is) it loads by itself. Defaults `{ wait: "5 seconds", poll:
   * "20 millis" }`; `poll` must not exceed `wait`. `false` turns it off: such a reader then loads
   * at once and fills under the lease it saw (each process loads once per expiry).
   */
  readonly lock?: boolean | {
    readonly wait?: Duration.DurationInput | undefined
    readonly poll?: Duration.DurationInput | undefined
  } | undefined
  /**
   * Stale-while-revalidate: for this long after an entry expires, `get` answers the stale value at
   * once and refreshes it in the background (once per key in the process, and once across
   * processes). Off by default.
   */
  readonly staleWhileRevalidate?: Duration.DurationInput | undefined
  /**
   * Probabilistic early expiration (XFetch, Vattani et al., VLDB 2015): a hit recomputes the value
   * in the background with a probability that rises as expiry nears, scaled by how long the lookup
   * took. `true` means `beta: 1`; a larger `beta` refreshes earlier; `0` never. Off by default.
   */
  readonly earlyExpiration?: boolean | { readonly beta?: number | undefined } | undefined
  /**
   * Fail-safe: entries are kept `maxStale` past their TTL; when the lookup fails (or a soft timeout
   * passes) and such a stale value is held, `get` answers it instead of failing, and keeps it for
   * `throttle` (never past `maxStale`) before trying the lookup again. One process reloads such an
   * entry at a time (a lease beside it); the others answer the stale value meanwhile. Off by default.
   */
  readonly failSafe?: {
    readonly maxStale: Duration.DurationInput
    readonly throttle?: Duration.DurationInput | undefined
  } | undefined
  /**
   * Lookup timeouts. `soft`: with fail-safe on and a stale value held, answer the stale value after
   * this and let the load finish in the background (it still fills the cache, and gets meanwhile
   * join it rather than start another). `hard`: fail with `LookupTimeout` after this (then
   * `LookupTimeout` is in the error type of `get`).
   */
  readonly lookupTimeout?: T
  /**
   * Wraps every `get`, hits too, in a `cache_aside.get` span. Off by default: a span costs more CPU
   * than the rest of a hit. When the caller is traced (a parent span is in context), loads run in a
   * `cache_aside.load` span and `getMany` in a `cache_aside.get_many` span; untraced, no span is made.
   */
  readonly spanEveryGet?: boolean | undefined
  /**
   * Show keys in clear in logs, span attributes and error messages (`LookupTimeout.key`). Keys can
   * be secrets (session tokens, e-mail addresses), so by default they appear only as a short hash
   * (`#` + 12 hex digits of their SHA-256), enough to correlate the lines about one key. Default `false`.
   */
  readonly logKeys?: boolean | undefined
  /**
   * A time limit for every store call of this cache, on top of the store's own: past it the call
   * counts as `CacheUnavailable` (a read falls back to the lookup). Each limited call costs an extra
   * timer and fiber, so set it only when this cache needs a tighter bound than the store's.
   */
  readonly storeTimeout?: Duration.DurationInput | undefined
  /**
   * How many keys keep their last decoded value: a hit whose bytes are the same as last time
   * returns that value again instead of decoding it (the same instance: treat cached values as
   * immutable, as Effect's data types are). Least recently used out first. Default 1000; 0 decodes
   * every hit.
   */
  readonly decodeCacheSize?: number | undefined
  /** The decode memo's budget in stored bytes; an entry above an eighth of it is never kept. Default 16 MiB. */
  readonly decodeCacheBytes?: number | undefined
  /** How many lookups one `getMany` runs at once when the lookup has no `loadMany`. Default 16. */
  readonly getManyConcurrency?: number | undefined
  /**
   * A near cache (L1) of decoded values in process memory, in front of the store: hits it holds
   * cost no round trip and no decoding. Coherent across processes through the `CacheBus` in context
   * (see `NearCache`). Off by default (unless a `NearCache.layerDefault` is provided); `false`: off.
   */
  readonly nearCache?: NearCache.Options | false | undefined
  /**
   * Most lookups of this cache running at once (batches count as one); the others wait for a turn,
   * within the hard `lookupTimeout` if any. Bounds the load a flushed near cache, a cold start or a
   * store outage can send to the data store. A lookup must not wait on a get of the same cache.
   * Default 64.
   */
  readonly lookupConcurrency?: number | undefined
  /**
   * Entry integrity: with a signing key (at least 16 bytes; 32 random bytes recommended), every
   * entry this cache writes carries an HMAC-SHA256 of its stored bytes bound to its full key, and
   * the cache reads only entries whose signature verifies. An unsigned or badly signed entry (one
   * planted by whoever can write to Redis, or copied from another key) is a miss: counted in
   * `integrityErrors`, taken over (compare-and-set of the bytes read) and answered by the lookup.
   * Leases stay unsigned (they carry no value: a forged one costs a lock wait and a load, never a
   * wrong answer). Costs 34 bytes per entry and one HMAC per decode: measured on the memory store
   * with `decodeCacheSize: 0` (bench/src/integrity.ts), about 7 to 10 µs more per hit and 10 to 20
   * µs more per miss; with the decode memo on, a hit on unchanged bytes verifies nothing again.
   * Turning signing on (or changing the key without `previousSigningKeys`) makes the entries already
   * cached misses once; during a rolling deploy, processes without the key evict signed entries as
   * corrupt, and those with it evict unsigned ones. Read the key from `Config.redacted`, so it never
   * prints:
   *
   * ```ts
   * const signingKey = yield* Config.redacted("CACHE_SIGNING_KEY")
   * const users = yield* CacheAside.make({ ...options, signingKey })
   * ```
   */
  readonly signingKey?: Redacted.Redacted<string | Uint8Array> | undefined
  /**
   * Key rotation: keys whose signatures are still accepted on read (entries are always written with
   * `signingKey`). Keep an old key here for one TTL after replacing it. Needs `signingKey`.
   */
  readonly previousSigningKeys?: ReadonlyArray<Redacted.Redacted<string | Uint8Array>> | undefined
}

/**
 * Options that cannot make a working cache (an empty namespace, a negative or infinite TTL, ...).
 *
 * @example
 * ```ts
 * import { CacheAside } from "@cache-aside/core"
 * const error = new CacheAside.InvalidOptions({ message: "jitter must be a number between 0 and 1, got 2" })
 * ```
 *
 * @since 0.1.0
 */
export class InvalidOptions extends Schema.TaggedError<InvalidOptions>("@cache-aside/core/InvalidOptions")(
  "InvalidOptions",
  { message: Schema.String }
) {}

/**
 * A lookup took longer than the hard `lookupTimeout`.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { CacheAside } from "@cache-aside/core"
 * const error = new CacheAside.LookupTimeout({ namespace: "user", key: "42", timeout: Duration.seconds(1) })
 * ```
 *
 * @since 0.1.0
 */
export class LookupTimeout extends Schema.TaggedError<LookupTimeout>("@cache-aside/core/LookupTimeout")(
  "LookupTimeout",
  { namespace: Schema.String, key: Schema.String, timeout: Schema.DurationFromSelf }
) {
  override get message(): string {
    return `lookup of ${this.namespace}/${this.key} timed out after ${Duration.format(this.timeout)}`
  }
}

/**
 * The error type of a cache's gets: the lookup's `E`, plus `LookupTimeout` when the options may
 * set a hard `lookupTimeout`.
 *
 * @since 0.1.0
 */
export type ErrorOf<E, T> = [T] extends [undefined] ? E
  : [T] extends [{ readonly hard?: undefined }] ? E
  : E | LookupTimeout

/**
 * A cache-aside handle. Its methods need nothing more: the lookup's requirements were captured
 * by `make`.
 *
 * @since 0.1.0
 */
export interface CacheAside<in out K, in out A, out E> {
  readonly namespace: string
  /** The full cache key of a lookup key (`prefix:namespace:version:key`, the key encoded). */
  readonly keyOf: (key: K) => string
  /**
   * Gets a value: from the cache, or from the lookup on a miss (then cached). Concurrent gets of
   * one key share one cache read and one lookup; an interrupted get leaves the others alone. A
   * store failure falls back to the lookup; only the lookup's own error (or `LookupTimeout`) fails
   * it. A miss answers the value decoded from the bytes it cached, the same shape as a hit.
   */
  readonly get: (key: K) => Effect.Effect<Option.Option<A>, E>
  /** Gets many values, in order, with one cache round-trip for all of them. */
  readonly getMany: (keys: Iterable<K>) => Effect.Effect<Array<Option.Option<A>>, E>
  /**
   * Reads the cache and never loads: `None` when nothing servable is cached (absent, expired, a
   * lease, unreadable, or the store failed), `Some(None)` for a cached "not found".
   */
  readonly getOption: (key: K) => Effect.Effect<Option.Option<Option.Option<A>>>
  /**
   * Reloads a key now and writes the result over what is cached, while gets keep serving the old
   * value meanwhile. Fails with the lookup's error (nothing is written then).
   */
  readonly refresh: (key: K) => Effect.Effect<void, E>
  /** Stores a value (after a write that produced it), replacing what is cached. */
  readonly set: (key: K, value: A) => Effect.Effect<void, CacheUnavailable | Codec.CodecError>
  /**
   * Removes one key. A load of that key already in flight in this process will not write its
   * (older) result, and a lease another process holds is deleted with the key, so its fill fails.
   *
   * It fails with `CacheUnavailable` only when the store itself fails the delete: the memory store
   * never does; a `ResilientCacheStore` (the Redis layers' default) queues an invalidation it cannot
   * deliver and succeeds, and applies it before any read or write of a key it covers (only an
   * invalidation dropped by a full queue is lost, and that is counted and logged). On failure nothing was deleted:
   * retry, or treat the key as stale until its TTL ends.
   */
  readonly invalidate: (key: K) => Effect.Effect<void, CacheUnavailable>
  /** Removes every key of the namespace (all versions); returns how many were removed. Fails as `invalidate` does. */
  readonly invalidateAll: Effect.Effect<number, CacheUnavailable>
  /**
   * Removes the keys whose lookup-key part matches a Redis glob pattern (`*`, `?`, `[...]`, `\`);
   * the prefix, namespace and version are escaped. Returns how many were removed. Fails as
   * `invalidate` does.
   */
  readonly invalidatePattern: (pattern: string) => Effect.Effect<number, CacheUnavailable>
}

/** The store with a time limit on every call (the `storeTimeout` option). */
const limitStore = (store: CacheStore["Type"], limit: Duration.Duration): CacheStore["Type"] =>
  mapOperations(store, (operation, effect) =>
    Effect.timeoutFail(effect, {
      duration: limit,
      onTimeout: () =>
        new CacheUnavailable({
          operation,
          cause: new Cause.TimeoutException(`the store did not answer ${operation} within ${Duration.format(limit)}`)
        })
    }))

/**
 * Makes a cache-aside handle for one kind of value. Build it once (in a `Layer`, or at the start of
 * the program) and share it: gets coalesce per handle. It needs a `CacheStore` and a `Scope`:
 * background work (refreshes, loads that outlive a soft timeout or an interrupted caller, batch
 * loads) runs in fibers of that scope, stopped when it closes. `Metrics` is optional: without it,
 * counters go to Effect's global metric registry only. With a hard `lookupTimeout`, gets can also
 * fail with `LookupTimeout`.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheAside, MemoryCacheStore } from "@cache-aside/core"
 *
 * class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
 * const findUser = (id: number) => Effect.succeed(Option.some(new User({ id, name: "Ada" })))
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* CacheAside.make({
 *     namespace: "user",
 *     key: (id: number) => String(id),
 *     schema: User,
 *     lookup: findUser,
 *     ttl: "1 hour"
 *   })
 *   return yield* users.get(42) // a miss: loads, caches, returns Some(User)
 * }).pipe(Effect.scoped, Effect.provide(MemoryCacheStore.layer()))
 * ```
 *
 * @example
 * ```ts
 * // signed entries: the key comes from Config as a Redacted value, so it never prints
 * import { Config, Effect, Option, Schema } from "effect"
 * import { CacheAside, MemoryCacheStore } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* CacheAside.make({
 *     namespace: "user",
 *     key: (id: number) => String(id),
 *     schema: Schema.String,
 *     lookup: (id: number) => Effect.succeed(Option.some(`user ${id}`)),
 *     ttl: "1 hour",
 *     signingKey: yield* Config.redacted("CACHE_SIGNING_KEY")
 *   })
 *   return yield* users.get(42)
 * }).pipe(Effect.scoped, Effect.provide(MemoryCacheStore.layer()))
 * ```
 *
 * @since 0.1.0
 */
export const make = <K, A, I, E = never, R = never, T extends LookupTimeouts | undefined = undefined>(
  options: Options<K, A, I, E, R, T>
): Effect.Effect<CacheAside<K, A, ErrorOf<E, T>>, InvalidOptions, CacheStore | Scope.Scope | R> =>
  Effect.gen(function*() {
    // a JavaScript caller can pass anything: `options.nearCache` below must not be a TypeError
    const given = options === undefined
      ? Either.left("options must be an object, got undefined")
      : validate.record("options", options)
    if (Either.isLeft(given)) return yield* new InvalidOptions({ message: given.left })
    const decoded = options_.decode(
      options.nearCache === undefined ? { ...options, nearCache: yield* NearCache.Default } : options
    )
    if (Either.isLeft(decoded)) return yield* new InvalidOptions({ message: decoded.left })
    const config = decoded.right
    if (config.unknownOptions.length > 0) {
      // not a typo of an option (those are refused): a field of a larger config spread in, say
      yield* Effect.logWarning(
        `cache-aside: options make does not know, ignored: ${config.unknownOptions.join(", ")}`
      ).pipe(Effect.annotateLogs({ namespace: config.namespace }))
    }
    const base = yield* CacheStore
    const store = config.storeTimeout === undefined ? base : limitStore(base, config.storeTimeout)
    // held until the scope closes: the last cache of a namespace to close lets its metrics state go
    const recorder = yield* Metrics.namespaceRecorder(config.namespace)
    const fibers = yield* FiberSet.make<unknown, unknown>()
    const impl = new CacheAsideImpl<K, A, ErrorOf<E, T>, R>(
      config as options_.Config<K, A, ErrorOf<E, T>, R>,
      store,
      recorder,
      fibers,
      yield* Effect.context<R>(),
      yield* Effect.clock,
      (key) => new LookupTimeout({ namespace: config.namespace, key, timeout: config.hardTimeout! }) as ErrorOf<E, T>
    )
    // runs before the FiberSet's own finalizer (finalizers run in reverse): the loads it interrupts
    // find the cache closed, and their waiters stop instead of starting new ones
    yield* Effect.addFinalizer(() => Effect.sync(() => impl.flights.close()))
    if (config.nearCache !== undefined) {
      // without a bus in context: coherent within this process only (see NearCache)
      const bus = Option.getOrElse(yield* Effect.serviceOption(CacheBus.CacheBus), CacheBus.memory)
      const near = new NearCacheImpl<A>(config.nearCache, bus.healthy, {
        evicted: (count) => recorder.increment("nearEvictions", count),
        flushed: () => recorder.increment("nearFlushes"),
        bypassed: () => recorder.increment("nearBypasses")
      })
      impl.near = { cache: near, bus, namespace: `${config.prefix}:${config.namespace}:` }
      yield* bus.subscribe(impl.near.namespace, {
        evict: (invalidation) => near.apply(invalidation),
        flush: () => near.flush()
      })
    }
    return impl.handle()
  })
