/**
 * The cache-aside read path: look the key up in the cache; on a hit return it; on a miss load it
 * from the data store, store it with a time-to-live, and return it. Writes invalidate.
 *
 * Every fill after a load is protected by a lease ("Scaling Memcache at Facebook", NSDI 2013,
 * 3.2.1): a miss puts a placeholder with a random token under the key (`SET NX PX`), and the fill
 * is a compare-and-set that only writes while the placeholder is still there. An invalidation
 * deletes the placeholder, so a load that raced it never caches its older result. With the `lock`
 * option, readers that find another process' lease wait for its fill instead of loading too.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Tracer from "effect/Tracer"
import { randomUUID } from "node:crypto"
import { CacheStore, CacheUnavailable, mapOperations } from "./CacheStore.js"
import * as Codec from "./Codec.js"
import type { DataSource } from "./DataSource.js"
import * as Glob from "./Glob.js"
import { Metrics } from "./Metrics.js"

/**
 * @since 0.1.0
 */
export interface Options<K, A, I, E, R> {
  /** Groups the keys of one kind of value; `invalidateAll` clears it. Must not contain `:` or control characters. */
  readonly namespace: string
  /** Turns a lookup key into the cache key's last part. Any characters are safe. */
  readonly key: (key: K) => string
  /** Encodes and decodes cached values; its encoded side must be JSON-compatible. */
  readonly schema: Schema.Schema<A, I, never>
  /** Loads a value from the data store; `None` means "not found". A function or a `DataSource`. */
  readonly lookup: ((key: K) => Effect.Effect<Option.Option<A>, E, R>) | DataSource<K, A, E, R>
  /** How long a value stays fresh: a duration, or a function of the value. A non-positive result is not cached. */
  readonly ttl: Duration.DurationInput | ((value: A) => Duration.DurationInput)
  /** How long a "not found" stays cached. Default: the TTL, at most one minute. Zero turns null caching off. */
  readonly negativeTtl?: Duration.DurationInput | undefined
  /** Random fraction (0 to 1) taken off each TTL so keys written together do not expire together. Default 0.1. */
  readonly jitter?: number | undefined
  /** Part of every key; bump it when the value's shape changes. Must not contain `:`. Default `"1"`. */
  readonly version?: string | undefined
  /** First part of every key. Default `"cache"`. */
  readonly prefix?: string | undefined
  /** Entries larger than this many bytes (as JSON) are gzip-compressed. Default 1024; `false` never compresses. */
  readonly compressAbove?: number | false | undefined
  /**
   * How long a lease (the placeholder a loader puts under a missing key) lives: the longest a load
   * is expected to take. A holder that dies leaves a lease that expires after this. Default 10 seconds.
   */
  readonly leaseTtl?: Duration.DurationInput | undefined
  /**
   * Distributed stampede lock: a reader that finds another process loading the key (its lease)
   * waits for that fill, polling, instead of loading too. After `wait` it loads by itself.
   * `true` means the defaults: `{ wait: "5 seconds", poll: "20 millis" }`. Off by default.
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
   * `throttle` before trying the lookup again. Off by default.
   */
  readonly failSafe?: {
    readonly maxStale: Duration.DurationInput
    readonly throttle?: Duration.DurationInput | undefined
  } | undefined
  /**
   * Lookup timeouts. `soft`: with fail-safe on and a stale value held, answer the stale value after
   * this and let the load finish in the background (it still fills the cache). `hard`: fail with
   * `LookupTimeout` after this.
   */
  /**
   * Wraps every `get`, hits too, in a `cache_aside.get` span. Off by default: a span costs more CPU
   * than the rest of a hit. When the caller is traced (a parent span is in context), loads run in a
   * `cache_aside.load` span and `getMany` in a `cache_aside.get_many` span; untraced, no span is made.
   */
  readonly spanEveryGet?: boolean | undefined
  /**
   * A time limit for every store call of this cache, on top of the store's own: past it the call
   * counts as `CacheUnavailable` (a read falls back to the lookup). Each limited call costs an extra
   * timer and fiber, so set it only when this cache needs a tighter bound than the store's.
   */
  readonly storeTimeout?: Duration.DurationInput | undefined
  /**
   * How many keys keep their last decoded value: a hit whose bytes are the same as last time
   * returns that value again instead of decoding it (the same instance: treat cached values as
   * immutable, as Effect's data types are). Default 1000; 0 decodes every hit.
   */
  readonly decodeCacheSize?: number | undefined
  readonly lookupTimeout?: {
    readonly soft?: Duration.DurationInput | undefined
    readonly hard?: Duration.DurationInput | undefined
  } | undefined
}

/**
 * Options that cannot make a working cache (an empty namespace, a negative TTL, ...).
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
 * A cache-aside handle. Its methods need nothing more: the lookup's requirements were captured
 * by `make`.
 *
 * @since 0.1.0
 */
export interface CacheAside<in out K, in out A, out E> {
  readonly namespace: string
  /** The full cache key of a lookup key (`prefix:namespace:version:key`). */
  readonly keyOf: (key: K) => string
  /**
   * Gets a value: from the cache, or from the lookup on a miss (then cached). Concurrent gets of
   * one key share one cache read and one lookup. A store failure falls back to the lookup; only
   * the lookup's own error (or `LookupTimeout`) fails it.
   */
  readonly get: (key: K) => Effect.Effect<Option.Option<A>, E>
  /** Gets many values, in order, with one cache round-trip for all of them. */
  readonly getMany: (keys: Iterable<K>) => Effect.Effect<Array<Option.Option<A>>, E>
  /** Stores a value (after a write that produced it), replacing what is cached. */
  readonly set: (key: K, value: A) => Effect.Effect<void, CacheUnavailable | Codec.CodecError>
  /** Removes one key. A load of that key already in flight will not write its (older) result. */
  readonly invalidate: (key: K) => Effect.Effect<void, CacheUnavailable>
  /** Removes every key of the namespace (all versions); returns how many were removed. */
  readonly invalidateAll: Effect.Effect<number, CacheUnavailable>
  /**
   * Removes the keys whose lookup-key part matches a Redis glob pattern (`*`, `?`, `[...]`);
   * the prefix, namespace and version are escaped. Returns how many were removed.
   */
  readonly invalidatePattern: (pattern: string) => Effect.Effect<number, CacheUnavailable>
}

const Retry: unique symbol = Symbol.for("@cache-aside/core/CacheAside/Retry")
type Outcome<A, E> = Exit.Exit<Option.Option<A>, E> | typeof Retry

/**
 * One read (and load) in flight for a key; gets of the same key join it. Plain callbacks rather
 * than a `Deferred`: this is on the hit path, and most flights are never joined.
 */
interface Flight<A, E> {
  waiters: Array<(outcome: Outcome<A, E>) => void> | undefined
  outcome: Outcome<A, E> | undefined
  readonly userKey: string
  /** Set when the key was invalidated or overwritten while the flight ran: its result is not cached. */
  invalidated: boolean
}

/** What one cache read found. */
type Read<A> =
  | { readonly _tag: "Unavailable"; readonly error: CacheUnavailable }
  | { readonly _tag: "Absent" }
  /** Another loader's lease: its bytes, so that a load by this reader may fill under it. */
  | { readonly _tag: "Leased"; readonly bytes: Uint8Array }
  /** `state`: fresh, stale within the stale-while-revalidate window, or held only for fail-safe. */
  | {
    readonly _tag: "Entry"
    readonly state: "fresh" | "stale" | "failSafe"
    readonly value: Option.Option<A>
    readonly entry: Codec.Entry<A>
    readonly bytes: Uint8Array
  }

// eslint-disable-next-line no-control-regex
const badName = /[:\u0000-\u001f]/

const validateName = (what: string, value: string): Option.Option<InvalidOptions> =>
  value.length === 0 || badName.test(value)
    ? Option.some(
      new InvalidOptions({
        message: `${what} must be non-empty, without ":" or control characters, got ${JSON.stringify(value)}`
      })
    )
    : Option.none()

const decodeDuration = (
  what: string,
  input: Duration.DurationInput
): Either.Either<Duration.Duration, InvalidOptions> => {
  // Duration clamps negative and NaN inputs to zero: reject them here rather than cache nothing silently
  const negative = (typeof input === "number" && !(input >= 0)) ||
    (typeof input === "bigint" && input < 0n) ||
    (typeof input === "string" && /^\s*-/.test(input))
  const decoded = negative ? Option.none() : Duration.decodeUnknown(input)
  if (Option.isNone(decoded)) {
    return Either.left(new InvalidOptions({ message: `${what} must be a non-negative duration, got ${String(input)}` }))
  }
  return Either.right(decoded.value)
}

const optionalDuration = (what: string, input: Duration.DurationInput | undefined) =>
  input === undefined ? Either.right(undefined) : decodeDuration(what, input)

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
 * Applies `span` only when the caller is traced (a parent span is in context). A span costs more
 * CPU than a cache hit and a quick lookup together; an untraced application should not pay it.
 */
const whenTraced = <A, E>(
  effect: Effect.Effect<A, E>,
  span: (effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
): Effect.Effect<A, E> =>
  Effect.flatMap(Effect.serviceOption(Tracer.ParentSpan), (parent) => Option.isSome(parent) ? span(effect) : effect)

const isDataSource = <K, A, E, R>(
  lookup: ((key: K) => Effect.Effect<Option.Option<A>, E, R>) | DataSource<K, A, E, R>
): lookup is DataSource<K, A, E, R> => typeof lookup === "object" && lookup !== null && "load" in lookup

/**
 * Makes a cache-aside handle for one kind of value. With a hard `lookupTimeout`, its gets can also
 * fail with `LookupTimeout`.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheAside, MemoryCacheStore, Metrics } from "@cache-aside/core"
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
 * }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.provide(Metrics.layer))
 * ```
 *
 * @since 0.1.0
 */
export function make<K, A, I, E = never, R = never>(
  options: Options<K, A, I, E, R> & {
    readonly lookupTimeout: {
      readonly hard: Duration.DurationInput
      readonly soft?: Duration.DurationInput | undefined
    }
  }
): Effect.Effect<CacheAside<K, A, E | LookupTimeout>, InvalidOptions, CacheStore | Metrics | R>
export function make<K, A, I, E = never, R = never>(
  options: Options<K, A, I, E, R>
): Effect.Effect<CacheAside<K, A, E>, InvalidOptions, CacheStore | Metrics | R>
export function make<K, A, I, E = never, R = never>(
  options: Options<K, A, I, E, R>
): Effect.Effect<CacheAside<K, A, E | LookupTimeout>, InvalidOptions, CacheStore | Metrics | R> {
  return Effect.gen(function*() {
    type Err = E | LookupTimeout
    const prefix = options.prefix ?? "cache"
    const version = options.version ?? "1"
    const invalidName = Option.orElse(
      validateName("namespace", options.namespace),
      () => validateName("version", version)
    )
    if (Option.isSome(invalidName)) return yield* invalidName.value
    if (prefix.length === 0) return yield* new InvalidOptions({ message: "prefix must be non-empty" })
    const jitter = options.jitter ?? 0.1
    if (!(jitter >= 0 && jitter <= 1)) {
      return yield* new InvalidOptions({ message: `jitter must be between 0 and 1, got ${jitter}` })
    }
    const staticTtl = typeof options.ttl === "function" ? undefined : yield* decodeDuration("ttl", options.ttl)
    if (staticTtl !== undefined && Duration.toMillis(staticTtl) < 1) {
      return yield* new InvalidOptions({ message: "ttl must be at least one millisecond" })
    }
    const negativeTtl = options.negativeTtl !== undefined
      ? yield* decodeDuration("negativeTtl", options.negativeTtl)
      : Duration.min(staticTtl ?? Duration.minutes(1), Duration.minutes(1))
    if (options.compressAbove !== undefined && options.compressAbove !== false && !(options.compressAbove >= 0)) {
      return yield* new InvalidOptions({ message: `compressAbove must be a non-negative number of bytes` })
    }
    const leaseMillis = Duration.toMillis(yield* decodeDuration("leaseTtl", options.leaseTtl ?? "10 seconds"))
    if (leaseMillis < 1) return yield* new InvalidOptions({ message: "leaseTtl must be at least one millisecond" })
    const lockOptions = options.lock === true ? {} : options.lock === false ? undefined : options.lock
    const lock = lockOptions === undefined ? undefined : {
      waitMillis: Duration.toMillis(yield* decodeDuration("lock.wait", lockOptions.wait ?? "5 seconds")),
      poll: Duration.max(yield* decodeDuration("lock.poll", lockOptions.poll ?? "20 millis"), Duration.millis(1))
    }
    const swrMillis = Duration.toMillis(
      (yield* optionalDuration("staleWhileRevalidate", options.staleWhileRevalidate))
        ?? Duration.zero
    )
    const beta = options.earlyExpiration === true
      ? 1
      : options.earlyExpiration === false || options.earlyExpiration === undefined
      ? 0
      : options.earlyExpiration.beta ?? 1
    if (!(beta >= 0 && Number.isFinite(beta))) {
      return yield* new InvalidOptions({ message: `earlyExpiration.beta must be a non-negative number, got ${beta}` })
    }
    const failSafe = options.failSafe === undefined ? undefined : {
      maxStaleMillis: Duration.toMillis(yield* decodeDuration("failSafe.maxStale", options.failSafe.maxStale)),
      throttleMillis: Duration.toMillis(
        yield* decodeDuration("failSafe.throttle", options.failSafe.throttle ?? "10 seconds")
      )
    }
    const softTimeout = yield* optionalDuration("lookupTimeout.soft", options.lookupTimeout?.soft)
    const hardTimeout = yield* optionalDuration("lookupTimeout.hard", options.lookupTimeout?.hard)
    /** How long an entry is kept past its logical expiry: for stale-while-revalidate and fail-safe. */
    const keepMillis = Math.max(swrMillis, failSafe?.maxStaleMillis ?? 0)
    const decodeCacheSize = options.decodeCacheSize ?? 1000
    if (!(Number.isInteger(decodeCacheSize) && decodeCacheSize >= 0)) {
      return yield* new InvalidOptions({
        message: `decodeCacheSize must be a non-negative integer, got ${decodeCacheSize}`
      })
    }

    const storeTimeout = yield* optionalDuration("storeTimeout", options.storeTimeout)
    const store = storeTimeout === undefined ? yield* CacheStore : limitStore(yield* CacheStore, storeTimeout)
    const recorder = (yield* Metrics).recorder(options.namespace)
    const context = yield* Effect.context<R>()
    /**
     * Runs the lookup with the requirements captured by `make`. When the caller's context already
     * holds every one of them (gets made where the cache was made, the common case), nothing needs
     * providing: providing costs more CPU than a cache hit. Checked once per caller context.
     */
    let lastCaller: Context.Context<never> | undefined
    let callerHasAll = false
    const withLookupContext = <X, Y>(effect: Effect.Effect<X, Y, R>): Effect.Effect<X, Y> =>
      Effect.contextWithEffect((caller: Context.Context<never>) => {
        if (caller !== lastCaller) {
          lastCaller = caller
          callerHasAll = true
          for (const [service, value] of context.unsafeMap) {
            if (caller.unsafeMap.get(service) !== value) {
              callerHasAll = false
              break
            }
          }
        }
        return callerHasAll ? effect as Effect.Effect<X, Y> : Effect.provide(effect, context)
      })
    const clock = yield* Effect.clock
    const codec = Codec.make(options.schema, { compressAbove: options.compressAbove })
    const source = isDataSource(options.lookup) ? options.lookup : { load: options.lookup, loadMany: undefined }
    const ttlOf = typeof options.ttl === "function" ? options.ttl : undefined

    const namespacePrefix = `${prefix}:${options.namespace}:`
    const keyPrefix = `${namespacePrefix}${version}:`
    /** Keys of the cross-process refresh hints: a segment no version can be (it has a control character). */
    const refreshPrefix = `${namespacePrefix}${version}\u0000refresh:`
    const keyOf = (key: K): string => keyPrefix + options.key(key)
    const inflight = new Map<string, Flight<A, Err>>()
    const refreshing = new Set<string>()
    const logAnnotations = { namespace: options.namespace }
    const now = () => clock.unsafeCurrentTimeMillis()
    const leaseTtl = Duration.millis(leaseMillis)

    const cacheError = (error: CacheUnavailable, event: "fallbacks" | "writeErrors" | undefined) => {
      recorder.increment("cacheErrors")
      if (event !== undefined) recorder.increment(event)
      // while a circuit breaker is open every get lands here: the store logged the opening once
      if (Predicate.isTagged(error.cause, "CircuitOpen")) return Effect.void
      return Effect.logWarning("cache-aside: cache store unavailable", error.message).pipe(
        Effect.annotateLogs({ ...logAnnotations, operation: error.operation })
      )
    }

    /** Runs work in the background; its failures are logged, never thrown. */
    const background = (work: Effect.Effect<void, unknown>) =>
      Effect.asVoid(Effect.forkDaemon(work.pipe(
        Effect.catchAllCause((cause) =>
          Effect.logWarning("cache-aside: background refresh failed", cause).pipe(Effect.annotateLogs(logAnnotations))
        )
      )))

    /** The fresh-for TTL of an entry, jittered; `None` when it must not be cached. */
    const ttlFor = (value: Option.Option<A>): Effect.Effect<Option.Option<number>> => {
      let base: Duration.Duration
      if (Option.isNone(value)) {
        base = negativeTtl
      } else if (ttlOf !== undefined) {
        const decoded = Duration.decodeUnknown(ttlOf(value.value))
        if (Option.isNone(decoded)) return Effect.succeed(Option.none())
        base = decoded.value
      } else {
        base = staticTtl!
      }
      const millis = Duration.toMillis(base)
      if (!(millis >= 1) || !Number.isFinite(millis)) return Effect.succeed(Option.none())
      if (jitter === 0) return Effect.succeed(Option.some(millis))
      return Effect.map(
        Effect.randomWith((random) => random.next),
        (r) => Option.some(Math.max(1, Math.round(millis * (1 - jitter * r))))
      )
    }

    /** Encodes an entry fresh for `freshMillis`, and the store TTL that keeps it for stale serves too. */
    const encodeEntry = (value: Option.Option<A>, freshMillis: number, delta: number) => {
      const expiresAt = now() + freshMillis
      const encoded = codec.encode(
        Option.isSome(value)
          ? { _tag: "Value", value: value.value, expiresAt, delta }
          : { _tag: "NotFound", expiresAt, delta }
      )
      return Either.map(encoded, (bytes) => [bytes, Duration.millis(freshMillis + keepMillis)] as const)
    }

    /**
     * Writes a loaded result if the key still holds `expected` (our lease, or the stale entry that
     * was refreshed) and was not invalidated in this process meanwhile. Never fails.
     */
    const fill = (
      full: string,
      flight: Flight<A, Err> | undefined,
      expected: Uint8Array,
      value: Option.Option<A>,
      delta: number
    ): Effect.Effect<void> =>
      Effect.flatMap(ttlFor(value), (ttl) => {
        if (Option.isNone(ttl) || flight?.invalidated === true) return Effect.void
        const encoded = encodeEntry(value, ttl.value, delta)
        if (Either.isLeft(encoded)) {
          recorder.increment("writeErrors")
          return Effect.logWarning("cache-aside: value could not be encoded, not cached", encoded.left.message).pipe(
            Effect.annotateLogs(logAnnotations)
          )
        }
        return store.compareAndSet(full, expected, encoded.right[0], encoded.right[1]).pipe(
          Effect.matchEffect({
            onFailure: (error) => cacheError(error, "writeErrors"),
            onSuccess: (written) => written ? Effect.void : Effect.sync(() => recorder.increment("leaseRejected"))
          })
        )
      })

    const timeoutError = (key: K) =>
      new LookupTimeout({ namespace: options.namespace, key: options.key(key), timeout: hardTimeout! })

    /** Runs the lookup with its captured context and hard timeout, counting and timing it. */
    const load = (key: K): Effect.Effect<readonly [Option.Option<A>, number], Err> => {
      const start = now()
      recorder.increment("loads")
      let lookup: Effect.Effect<Option.Option<A>, Err> = withLookupContext(source.load(key))
      if (hardTimeout !== undefined) {
        lookup = Effect.timeoutFail(lookup, { duration: hardTimeout, onTimeout: () => timeoutError(key) })
      }
      return lookup.pipe(
        (lookup) =>
          whenTraced(lookup, (traced) =>
            Effect.withSpan(traced, "cache_aside.load", {
              kind: "client",
              attributes: { namespace: options.namespace, key: options.key(key) },
              captureStackTrace: false
            })),
        Effect.tapError((error) =>
          Effect.sync(() => {
            recorder.increment("loadErrors")
            if (error instanceof LookupTimeout) recorder.increment("lookupTimeouts")
          })
        ),
        Effect.map((value) => {
          const delta = now() - start
          recorder.observeLoad(delta)
          return [value, delta] as const
        })
      )
    }

    /** A load whose result is not cached (the store failed, or no lease could be taken). */
    const loadOnly = (key: K) => Effect.map(load(key), ([value]) => value)

    const loadAndFill = (key: K, full: string, flight: Flight<A, Err> | undefined, expected: Uint8Array) =>
      Effect.flatMap(load(key), ([value, delta]) => Effect.as(fill(full, flight, expected, value, delta), value))

    /**
     * The last entry decoded per key, with its bytes: a read that finds the very same bytes again
     * skips JSON parsing and schema decoding (the bulk of a hit's CPU). Bounded; oldest out first.
     */
    const decodedMemo = new Map<string, { readonly bytes: Uint8Array; readonly entry: Codec.Stored<A> }>()
    const decode = (full: string, bytes: Uint8Array): Either.Either<Codec.Stored<A>, Codec.CodecError> => {
      const memo = decodedMemo.get(full)
      if (memo !== undefined && (memo.bytes === bytes || Buffer.prototype.equals.call(memo.bytes, bytes))) {
        return Either.right(memo.entry)
      }
      const result = codec.decode(bytes)
      if (decodeCacheSize > 0 && Either.isRight(result) && result.right._tag !== "Lease") {
        decodedMemo.delete(full)
        decodedMemo.set(full, { bytes, entry: result.right })
        if (decodedMemo.size > decodeCacheSize) decodedMemo.delete(decodedMemo.keys().next().value!)
      }
      return result
    }

    /** Classifies stored bytes, synchronously; undecodable bytes are a `CodecError`. */
    const inspect = (stored: Option.Option<Uint8Array>, full: string): Read<A> | Codec.CodecError => {
      if (Option.isNone(stored)) return { _tag: "Absent" }
      const decoded = decode(full, stored.value)
      if (Either.isLeft(decoded)) return decoded.left
      const entry = decoded.right
      if (entry._tag === "Lease") return { _tag: "Leased", bytes: stored.value }
      if (entry._tag === "Newer") return { _tag: "Absent" }
      const at = now()
      const state = at < entry.expiresAt ? "fresh" : at < entry.expiresAt + swrMillis ? "stale" : "failSafe"
      if (state === "failSafe" && failSafe === undefined) return { _tag: "Absent" }
      const value = entry._tag === "Value" ? Option.some(entry.value) : Option.none()
      return { _tag: "Entry", state, value, entry, bytes: stored.value }
    }

    /** A corrupt entry is evicted, counted, logged, and read as absent. */
    const evictCorrupt = (full: string, error: Codec.CodecError): Effect.Effect<Read<A>> => {
      recorder.increment("decodeErrors")
      return Effect.logWarning("cache-aside: corrupt cache entry evicted", error.message).pipe(
        Effect.annotateLogs({ ...logAnnotations, key: full }),
        Effect.zipRight(Effect.ignore(store.delete([full]))),
        Effect.as({ _tag: "Absent" } as const)
      )
    }

    const classify = (full: string, stored: Option.Option<Uint8Array>): Effect.Effect<Read<A>> => {
      const found = inspect(stored, full)
      return found._tag === "CodecError" ? evictCorrupt(full, found) : Effect.succeed(found)
    }

    const read = (full: string): Effect.Effect<Read<A>> =>
      Effect.matchEffect(store.get(full), {
        onFailure: (error) => Effect.succeed({ _tag: "Unavailable", error } as const),
        onSuccess: (stored) => classify(full, stored)
      })

    /** XFetch: `now - delta * beta * ln(random) >= expiry`. */
    const shouldRefreshEarly = (entry: Codec.Entry<A>): Effect.Effect<boolean> =>
      beta === 0 || entry.delta <= 0
        ? Effect.succeed(false)
        : Effect.map(
          Effect.randomWith((random) => random.next),
          (r) => now() - entry.delta * beta * Math.log(r) >= entry.expiresAt
        )

    /**
     * Refreshes a held entry in the background: once per key in this process, and once across
     * processes (a short hint key taken with `SET NX`); the fill is a compare-and-set against the
     * entry that was read, so an invalidation meanwhile wins.
     */
    const refresh = (key: K, full: string, bytes: Uint8Array): Effect.Effect<void> =>
      Effect.suspend(() => {
        if (refreshing.has(full)) return Effect.void
        refreshing.add(full)
        const hint = refreshPrefix + full.slice(keyPrefix.length)
        return background(
          store.setIfAbsent(hint, Codec.lease(randomUUID()), leaseTtl).pipe(
            Effect.flatMap((mine): Effect.Effect<void, Err> =>
              mine
                ? loadAndFill(key, full, undefined, bytes).pipe(
                  Effect.asVoid,
                  Effect.ensuring(Effect.ignore(store.delete([hint])))
                )
                : Effect.void
            ),
            Effect.ensuring(Effect.sync(() => refreshing.delete(full)))
          )
        )
      })

    /** A miss: take the lease and load; if someone else holds it, wait for their fill (lock) or load alone. */
    const missLoad = (
      key: K,
      full: string,
      flight: Flight<A, Err> | undefined,
      deadline: number | undefined
    ): Effect.Effect<Option.Option<A>, Err> => {
      const lease = Codec.lease(randomUUID())
      return store.setIfAbsent(full, lease, leaseTtl).pipe(
        Effect.matchEffect({
          // the read worked, the write path did not: the value is served, not cached
          onFailure: (error) => Effect.zipRight(cacheError(error, "writeErrors"), loadOnly(key)),
          onSuccess: (acquired): Effect.Effect<Option.Option<A>, Err> =>
            acquired
              ? Effect.tapError(
                loadAndFill(key, full, flight, lease),
                // release the lease at once so that waiters do not wait for it to expire
                () => Effect.ignore(store.compareAndDelete(full, lease))
              )
              : lock !== undefined
              ? waitForFill(key, full, flight, deadline ?? now() + lock.waitMillis)
              : loadOnly(key)
        })
      )
    }

    /** The lock: polls until the lease holder's fill lands, the lease goes away, or the deadline passes. */
    const waitForFill = (
      key: K,
      full: string,
      flight: Flight<A, Err> | undefined,
      deadline: number
    ): Effect.Effect<Option.Option<A>, Err> => {
      recorder.increment("lockWaits")
      const poll: Effect.Effect<Option.Option<A>, Err> = Effect.flatMap(
        Effect.zipRight(Effect.sleep(lock!.poll), read(full)),
        (found): Effect.Effect<Option.Option<A>, Err> => {
          switch (found._tag) {
            case "Entry":
              return Effect.succeed(found.value)
            case "Absent":
              // the holder released its lease (its load failed) or an invalidation removed it: try again
              return now() < deadline ? missLoad(key, full, flight, deadline) : timedOut
            case "Leased":
              lastLease = found.bytes
              return now() < deadline ? poll : timedOut
            case "Unavailable":
              return Effect.zipRight(cacheError(found.error, "fallbacks"), loadOnly(key))
          }
        }
      )
      let lastLease: Uint8Array | undefined
      const timedOut = Effect.suspend(() => {
        recorder.increment("lockTimeouts")
        return lastLease === undefined ? loadOnly(key) : loadAndFill(key, full, flight, lastLease)
      })
      return poll
    }

    /**
     * Fail-safe: the entry is past its TTL and past the stale-while-revalidate window but still
     * held. Load in the foreground; if the load fails, or the soft timeout passes first, answer
     * the stale value (and keep it for the throttle period, so the failing lookup is not hammered).
     */
    const reloadOverStale = (
      key: K,
      full: string,
      flight: Flight<A, Err>,
      stale: Extract<Read<A>, { readonly _tag: "Entry" }>
    ): Effect.Effect<Option.Option<A>, Err> => {
      const serveStale = (reason: string) =>
        Effect.gen(function*() {
          recorder.increment("staleServes")
          yield* Effect.logWarning(`cache-aside: fail-safe, serving a stale value (${reason})`).pipe(
            Effect.annotateLogs({ ...logAnnotations, key: full })
          )
          return stale.value
        })
      const throttle = Effect.suspend(() => {
        const encoded = encodeEntry(stale.value, failSafe!.throttleMillis, stale.entry.delta)
        return Either.isLeft(encoded)
          ? Effect.void
          : Effect.ignore(store.compareAndSet(full, stale.bytes, encoded.right[0], encoded.right[1]))
      })
      const work = loadAndFill(key, full, flight, stale.bytes)
      const loaded: Effect.Effect<Option.Option<A>, Err> = softTimeout === undefined
        ? work
        : Effect.flatMap(Effect.forkDaemon(work), (fiber) =>
          Effect.flatMap(
            Effect.timeoutOption(Fiber.join(fiber), softTimeout),
            Option.match({
              onSome: (value): Effect.Effect<Option.Option<A>> => Effect.succeed(value),
              onNone: () => {
                recorder.increment("lookupTimeouts")
                return serveStale(`the lookup passed its soft timeout of ${Duration.format(softTimeout)}`)
              }
            })
          ))
      return Effect.catchAll(loaded, (error) =>
        Effect.zipRight(
          throttle,
          serveStale(error instanceof LookupTimeout ? error.message : "the lookup failed")
        ))
    }

    /** What to answer for a read: the read path's decision table. */
    const resolve = (
      key: K,
      full: string,
      flight: Flight<A, Err>,
      found: Read<A>
    ): Effect.Effect<Option.Option<A>, Err> => {
      switch (found._tag) {
        case "Unavailable":
          recorder.increment("misses")
          return Effect.zipRight(cacheError(found.error, "fallbacks"), loadOnly(key))
        case "Absent":
          recorder.increment("misses")
          return missLoad(key, full, flight, undefined)
        case "Leased":
          recorder.increment("misses")
          // Without the lock, load now and fill under the lease that was seen: the compare-and-set
          // succeeds only while that lease is still there, so an invalidation since (which deleted
          // it) still wins, and this process's next gets hit instead of loading again.
          return lock !== undefined
            ? waitForFill(key, full, flight, now() + lock.waitMillis)
            : loadAndFill(key, full, flight, found.bytes)
        case "Entry": {
          if (found.state === "failSafe") {
            recorder.increment("misses")
            return reloadOverStale(key, full, flight, found)
          }
          recorder.increment("hits")
          if (found.state === "stale") {
            recorder.increment("staleServes")
            return Effect.as(refresh(key, full, found.bytes), found.value)
          }
          if (beta === 0) return Effect.succeed(found.value)
          return Effect.flatMap(shouldRefreshEarly(found.entry), (early) => {
            if (!early) return Effect.succeed(found.value)
            recorder.increment("earlyRefreshes")
            return Effect.as(refresh(key, full, found.bytes), found.value)
          })
        }
      }
    }

    const startFlight = (full: string, userKey: string): Flight<A, Err> => {
      const flight: Flight<A, Err> = { waiters: undefined, outcome: undefined, userKey, invalidated: false }
      inflight.set(full, flight)
      return flight
    }

    const settleNow = (full: string, flight: Flight<A, Err>, exit: Exit.Exit<Option.Option<A>, Err>) => {
      if (inflight.get(full) === flight) inflight.delete(full)
      if (flight.outcome !== undefined) return
      const outcome = Exit.isInterrupted(exit) ? Retry : exit
      flight.outcome = outcome
      const waiters = flight.waiters
      flight.waiters = undefined
      if (waiters !== undefined) { for (const waiter of waiters) waiter(outcome) }
    }

    const settle = (full: string, flight: Flight<A, Err>, exit: Exit.Exit<Option.Option<A>, Err>) =>
      Effect.sync(() => settleNow(full, flight, exit))

    const lead = (
      full: string,
      flight: Flight<A, Err>,
      work: Effect.Effect<Option.Option<A>, Err>
    ): Effect.Effect<Option.Option<A>, Err> => Effect.onExit(work, (exit) => settle(full, flight, exit))

    /** Waits for a flight's outcome; the leader was interrupted: this get tries again by itself. */
    const awaitFlight = (key: K, flight: Flight<A, Err>): Effect.Effect<Option.Option<A>, Err> =>
      Effect.async<Option.Option<A>, Err>((resume) => {
        const answer = (outcome: Outcome<A, Err>) => resume(outcome === Retry ? get(key) : outcome)
        if (flight.outcome !== undefined) return answer(flight.outcome) // no canceller: an interrupted waiter's answer is simply ignored when the flight settles
         // (cheaper than removing it, for the many joiners of a hot key)
        ;(flight.waiters ?? (flight.waiters = [])).push(answer)
      })

    const join = (key: K, flight: Flight<A, Err>): Effect.Effect<Option.Option<A>, Err> => {
      recorder.increment("coalesced")
      return awaitFlight(key, flight)
    }

    const get = (key: K): Effect.Effect<Option.Option<A>, Err> =>
      Effect.suspend(() => {
        const userKey = options.key(key)
        const full = keyPrefix + userKey
        const existing = inflight.get(full)
        if (existing !== undefined) return join(key, existing)
        const flight = startFlight(full, userKey)
        return lead(
          full,
          flight,
          Effect.matchEffect(store.get(full), {
            onFailure: (error) => resolve(key, full, flight, { _tag: "Unavailable", error }),
            onSuccess: (stored) => {
              // classified synchronously: a fresh hit is answered without intermediate effects
              const found = inspect(stored, full)
              return found._tag === "CodecError"
                ? Effect.flatMap(evictCorrupt(full, found), (absent) => resolve(key, full, flight, absent))
                : resolve(key, full, flight, found)
            }
          })
        )
      })

    interface Led {
      readonly key: K
      readonly full: string
      readonly flight: Flight<A, Err>
    }

    const getMany = (keys: Iterable<K>): Effect.Effect<Array<Option.Option<A>>, Err> =>
      Effect.suspend(() => {
        const all = Array.from(keys)
        const fulls = all.map(keyOf)
        // one entry per distinct key: joined flights, and keys this call leads
        const waits = new Map<string, Effect.Effect<Option.Option<A>, Err>>()
        const led: Array<Led> = []
        all.forEach((key, i) => {
          const full = fulls[i]!
          if (waits.has(full)) return
          const existing = inflight.get(full)
          if (existing !== undefined) {
            waits.set(full, join(key, existing))
          } else {
            const flight = startFlight(full, full.slice(keyPrefix.length))
            led.push({ key, full, flight })
            waits.set(full, awaitFlight(key, flight))
          }
        })
        const leadAll = led.length === 0 ? Effect.void : Effect.forkDaemon(leadMany(led))
        return Effect.zipRight(
          leadAll,
          Effect.forEach(fulls, (full) => waits.get(full)!, { concurrency: "unbounded" })
        )
      })

    /**
     * Reads all led keys with one `getMany`; absent keys are leased and loaded in one batch when
     * the source has `loadMany`; every other case goes through the single-key decision table.
     */
    const leadMany = (led: ReadonlyArray<Led>): Effect.Effect<void> =>
      Effect.gen(function*() {
        const stored = yield* Effect.either(store.getMany(led.map((l) => l.full)))
        const found: Array<Read<A>> = Either.isLeft(stored)
          ? led.map(() => ({ _tag: "Unavailable", error: stored.left }))
          : yield* Effect.forEach(led, (l, i) => classify(l.full, stored.right[i]!))
        const batchable: Array<Led> = []
        const single: Array<readonly [Led, Read<A>]> = []
        led.forEach((l, i) => {
          const f = found[i]!
          if (source.loadMany !== undefined && (f._tag === "Absent" || f._tag === "Unavailable")) batchable.push(l)
          else single.push([l, f])
        })
        if (batchable.length === 1) single.push([batchable[0]!, found[led.indexOf(batchable[0]!)]!])
        yield* Effect.forEach(
          single,
          ([l, f]) => Effect.exit(lead(l.full, l.flight, resolve(l.key, l.full, l.flight, f))),
          { concurrency: "unbounded", discard: true }
        )
        if (batchable.length > 1) yield* loadBatch(batchable, Either.isLeft(stored) ? stored.left : undefined)
      }).pipe(
        // a defect in the batch must still release every waiter
        Effect.onExit((exit) =>
          Exit.isSuccess(exit)
            ? Effect.void
            : Effect.forEach(led, (l) => settle(l.full, l.flight, Exit.failCause(exit.cause)), { discard: true })
        )
      )

    /** Absent keys (or all keys, when the store failed) loaded with one `loadMany`, each fill under its lease. */
    const loadBatch = (misses: ReadonlyArray<Led>, unavailable: CacheUnavailable | undefined): Effect.Effect<void> =>
      Effect.gen(function*() {
        recorder.increment("misses", misses.length)
        const leases = misses.map(() => Codec.lease(randomUUID()))
        let acquired: ReadonlyArray<boolean>
        if (unavailable !== undefined) {
          yield* cacheError(unavailable, "fallbacks")
          recorder.increment("fallbacks", misses.length - 1)
          acquired = misses.map(() => false)
        } else {
          acquired = yield* Effect.forEach(
            misses,
            (m, i) => Effect.orElseSucceed(store.setIfAbsent(m.full, leases[i]!, leaseTtl), () => false),
            { concurrency: "unbounded" }
          )
        }
        // keys leased by someone else wait for their fill (lock) like single gets; the rest load in one batch
        const waiting = lock !== undefined && unavailable === undefined ? misses.filter((_, i) => !acquired[i]) : []
        yield* Effect.forEach(
          waiting,
          (m) => Effect.exit(lead(m.full, m.flight, waitForFill(m.key, m.full, m.flight, now() + lock!.waitMillis))),
          { concurrency: "unbounded", discard: true }
        )
        const batch = misses.filter((m) => !waiting.includes(m))
        if (batch.length === 0) return
        const start = now()
        recorder.increment("loads", batch.length)
        const loaded = yield* Effect.exit(withLookupContext(source.loadMany!(batch.map((m) => m.key))))
        if (Exit.isFailure(loaded)) {
          recorder.increment("loadErrors", batch.length)
          const failed = Exit.failCause(loaded.cause)
          yield* Effect.forEach(batch, (m) => {
            const i = misses.indexOf(m)
            return Effect.zipRight(
              acquired[i] ? Effect.ignore(store.compareAndDelete(m.full, leases[i]!)) : Effect.void,
              settle(m.full, m.flight, failed)
            )
          }, { concurrency: "unbounded", discard: true })
          return
        }
        const delta = now() - start
        recorder.observeLoad(delta)
        // matched by key, never by position; a key the batch did not answer is loaded on its own
        const answers = new Map<string, Option.Option<A>>()
        for (const [k, value] of loaded.value) answers.set(options.key(k), value)
        yield* Effect.forEach(batch, (m) => {
          const i = misses.indexOf(m)
          const value = answers.get(m.full.slice(keyPrefix.length))
          if (value === undefined) return Effect.exit(lead(m.full, m.flight, loadOnly(m.key)))
          return Effect.zipRight(
            acquired[i] ? fill(m.full, m.flight, leases[i]!, value, delta) : Effect.void,
            settle(m.full, m.flight, Exit.succeed(value))
          )
        }, { concurrency: "unbounded", discard: true })
      })

    const invalidateFlights = (matches: (flight: Flight<A, Err>, full: string) => boolean) => {
      for (const [full, flight] of inflight) {
        if (matches(flight, full)) {
          flight.invalidated = true
          inflight.delete(full)
        }
      }
    }

    const set = (key: K, value: A): Effect.Effect<void, CacheUnavailable | Codec.CodecError> =>
      Effect.suspend(() => {
        const full = keyOf(key)
        invalidateFlights((_, f) => f === full)
        return Effect.flatMap(
          ttlFor(Option.some(value)),
          (ttl): Effect.Effect<void, CacheUnavailable | Codec.CodecError> => {
            if (Option.isNone(ttl)) return Effect.asVoid(store.delete([full]))
            const encoded = encodeEntry(Option.some(value), ttl.value, 0)
            return Either.isLeft(encoded)
              ? Effect.fail(encoded.left)
              : store.set(full, encoded.right[0], encoded.right[1])
          }
        )
      })

    const invalidate = (key: K): Effect.Effect<void, CacheUnavailable> =>
      Effect.suspend(() => {
        const full = keyOf(key)
        invalidateFlights((_, f) => f === full)
        return Effect.asVoid(store.delete([full]))
      })

    const invalidateAll: Effect.Effect<number, CacheUnavailable> = Effect.suspend(() => {
      invalidateFlights(() => true)
      return store.deletePattern(`${Glob.escape(namespacePrefix)}*`)
    })

    const invalidatePattern = (pattern: string): Effect.Effect<number, CacheUnavailable> =>
      Effect.suspend(() => {
        const regex = Glob.toRegExp(pattern)
        invalidateFlights((flight) => regex.test(flight.userKey))
        return store.deletePattern(Glob.escape(keyPrefix) + pattern)
      })

    const spanOptions = { kind: "client", attributes: logAnnotations, captureStackTrace: false } as const
    return {
      namespace: options.namespace,
      keyOf,
      get: options.spanEveryGet === true
        ? (key) => Effect.withSpan(get(key), "cache_aside.get", spanOptions)
        : get,
      getMany: (keys) =>
        whenTraced(getMany(keys), (traced) => Effect.withSpan(traced, "cache_aside.get_many", spanOptions)),
      set,
      invalidate,
      invalidateAll,
      invalidatePattern
    } satisfies CacheAside<K, A, Err>
  })
}
