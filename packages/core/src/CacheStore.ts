/**
 * The cache store port: the narrow set of operations the cache-aside read path needs from a
 * key-value store with expiry. Implementations: `MemoryCacheStore` (in this package) and
 * `RedisCacheStore` (in `@cache-aside/redis`). Both pass the same conformance suite.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import type * as Duration from "effect/Duration"
import type * as Effect from "effect/Effect"
import type * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { Buffer } from "node:buffer"

/**
 * The store could not be reached or answered with an error. `get` never fails with it: the read
 * path falls back to the lookup, counts it and logs it.
 *
 * @example
 * ```ts
 * import { CacheStore } from "@cache-aside/core"
 * const error = new CacheStore.CacheUnavailable({ operation: "get", cause: new Error("ECONNREFUSED") })
 * ```
 *
 * @since 0.1.0
 */
export class CacheUnavailable extends Schema.TaggedError<CacheUnavailable>(
  "@cache-aside/core/CacheUnavailable"
)("CacheUnavailable", {
  operation: Schema.String,
  cause: Schema.optional(Schema.Defect),
  /**
   * `true` when the store answered, with an error (Redis: `OOM`, `READONLY`, `LOADING`, ...): it is
   * reachable, so this failure adds no latency and does not count towards opening a circuit breaker.
   */
  replied: Schema.optional(Schema.Boolean)
}) {
  override get message(): string {
    const cause = this.cause instanceof Error ? `: ${this.cause.message}` : ""
    return `cache store unavailable during ${this.operation}${cause}`
  }
}

/**
 * Options that cannot make a working store (a memory store, the resilient wrapper, a Redis store):
 * the one error of every store layer's construction.
 *
 * @example
 * ```ts
 * import { CacheStore } from "@cache-aside/core"
 * const error = new CacheStore.InvalidStoreOptions({ message: "maxEntries must be a positive integer, got 0" })
 * ```
 *
 * @since 0.1.0
 */
export class InvalidStoreOptions extends Schema.TaggedError<InvalidStoreOptions>(
  "@cache-aside/core/InvalidStoreOptions"
)("InvalidStoreOptions", { message: Schema.String }) {}

/**
 * A stored value: opaque bytes (the codec decides what they mean).
 *
 * @since 0.1.0
 */
export type Bytes = Uint8Array

/**
 * The port. Keys are full keys (prefix, namespace, version and user key already joined).
 * Patterns are Redis glob patterns (`*`, `?`, `[...]`, `\` escapes) matched against full keys.
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { CacheStore, MemoryCacheStore } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const store = yield* CacheStore.CacheStore
 *   yield* store.set("k", new TextEncoder().encode("v"), "1 minute")
 *   const value = yield* store.get("k")
 *   return Option.isSome(value)
 * }).pipe(Effect.provide(MemoryCacheStore.layer()))
 * ```
 *
 * @since 0.1.0
 */
export class CacheStore extends Context.Tag("@cache-aside/core/CacheStore")<CacheStore, {
  /** Reads one key. `None` when absent or expired. */
  readonly get: (key: string) => Effect.Effect<Option.Option<Bytes>, CacheUnavailable>
  /**
   * Reads one key and, when it is absent (or expired), puts `lease` under it with `ttl` in the same
   * atomic step (on Redis: one script, one round trip). `None`: the key was absent and now holds
   * `lease`, which is the caller's to fill or release. `Some(bytes)`: what the key holds, left as
   * it is. A miss reads and takes its lease with this (memcache's lease-get), so it costs the round
   * trips of a plain `GET` + `SET`; `setIfAbsent` stays for leases taken after a first read.
   * A store that read the key, found it absent and could not write the lease (Redis `OOM`,
   * `READONLY`) fails with operation `setIfAbsent`: the caller then serves its load uncached.
   */
  readonly getOrLease: (
    key: string,
    lease: Bytes,
    ttl: Duration.Duration
  ) => Effect.Effect<Option.Option<Bytes>, CacheUnavailable>
  /** Reads many keys in one round-trip; the result is aligned with `keys`. */
  readonly getMany: (
    keys: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<Option.Option<Bytes>>, CacheUnavailable>
  /** Writes one key with a time-to-live (at least one millisecond). */
  readonly set: (key: string, value: Bytes, ttl: Duration.Duration) => Effect.Effect<void, CacheUnavailable>
  /**
   * Writes one key only if it is absent (`SET NX PX`); `true` when written. Leases are taken with it.
   */
  readonly setIfAbsent: (key: string, value: Bytes, ttl: Duration.Duration) => Effect.Effect<boolean, CacheUnavailable>
  /**
   * Writes one key only if it still holds exactly `expected` (atomically: a Lua script on Redis);
   * `true` when written. A fill after a load is one, so that a load which raced an invalidation
   * (the key was deleted, or leased again by someone else) never writes its older result.
   */
  readonly compareAndSet: (
    key: string,
    expected: Bytes,
    value: Bytes,
    ttl: Duration.Duration
  ) => Effect.Effect<boolean, CacheUnavailable>
  /** Deletes one key only if it still holds exactly `expected`; `true` when deleted. Releases a lease. */
  readonly compareAndDelete: (key: string, expected: Bytes) => Effect.Effect<boolean, CacheUnavailable>
  /** Deletes keys; returns how many existed. An empty list is a no-op. */
  readonly delete: (keys: ReadonlyArray<string>) => Effect.Effect<number, CacheUnavailable>
  /**
   * Deletes every key matching a glob pattern (incrementally, never blocking the server); returns how
   * many. A pattern of more than `maxPatternBytes` bytes is refused (`patternRefusal`), nothing sent.
   */
  readonly deletePattern: (pattern: string) => Effect.Effect<number, CacheUnavailable>
}>() {}

/**
 * The names of the port's operations (as in `CacheUnavailable.operation`).
 *
 * @since 0.1.0
 */
export type Operation = Exclude<keyof CacheStore["Type"], symbol>

/**
 * Every operation, in the order the port declares them.
 *
 * @since 0.1.0
 */
export const operations: ReadonlyArray<Operation> = [
  "get",
  "getOrLease",
  "getMany",
  "set",
  "setIfAbsent",
  "compareAndSet",
  "compareAndDelete",
  "delete",
  "deletePattern"
]

/**
 * A store whose every operation goes through `f` (a time limit, fault injection, ...): the one
 * place that lists the port's operations for wrappers.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { CacheStore, MemoryCacheStore } from "@cache-aside/core"
 *
 * const logged = Effect.map(MemoryCacheStore.make(), (store) =>
 *   CacheStore.mapOperations(store, (operation, effect) =>
 *     Effect.zipRight(Effect.logDebug(`store ${operation}`), effect)))
 * ```
 *
 * @since 0.1.0
 */
export const mapOperations = (
  store: CacheStore["Type"],
  f: <A>(operation: Operation, effect: Effect.Effect<A, CacheUnavailable>) => Effect.Effect<A, CacheUnavailable>
): CacheStore["Type"] =>
  CacheStore.of({
    get: (key) => f("get", store.get(key)),
    getOrLease: (key, lease, ttl) => f("getOrLease", store.getOrLease(key, lease, ttl)),
    getMany: (keys) => f("getMany", store.getMany(keys)),
    set: (key, value, ttl) => f("set", store.set(key, value, ttl)),
    setIfAbsent: (key, value, ttl) => f("setIfAbsent", store.setIfAbsent(key, value, ttl)),
    compareAndSet: (key, expected, value, ttl) => f("compareAndSet", store.compareAndSet(key, expected, value, ttl)),
    compareAndDelete: (key, expected) => f("compareAndDelete", store.compareAndDelete(key, expected)),
    delete: (keys) => f("delete", store.delete(keys)),
    deletePattern: (pattern) => f("deletePattern", store.deletePattern(pattern))
  })

/**
 * The most bytes (UTF-8, as sent to Redis) a `deletePattern` pattern may have. Matching costs up
 * to pattern × key length per key (on Redis, inside `SCAN`, which blocks every other client), so a
 * long pattern is refused before any key is looked at. Four times `invalidatePattern`'s bound of
 * 1,024 bytes over user keys: a cache's own patterns add the escaped key prefix, and escapes can
 * double a pattern's bytes.
 *
 * @since 0.1.0
 */
export const maxPatternBytes = 4096

/**
 * How every store refuses a `deletePattern` pattern longer than `maxPatternBytes`:
 * `CacheUnavailable` with `operation: "deletePattern"`, `replied: true` (no circuit breaker counts
 * it) and a `RangeError` saying why; `undefined` for a pattern within the bound.
 *
 * @example
 * ```ts
 * import { CacheStore } from "@cache-aside/core"
 * CacheStore.patternRefusal("user:*") // undefined
 * CacheStore.patternRefusal("*a".repeat(5000))?.replied // true
 * ```
 *
 * @since 0.1.0
 */
export const patternRefusal = (pattern: string): CacheUnavailable | undefined => {
  // (a string's UTF-8 has at most three bytes per UTF-16 code unit)
  if (pattern.length * 3 <= maxPatternBytes) return undefined
  const bytes = Buffer.byteLength(pattern, "utf8")
  if (bytes <= maxPatternBytes) return undefined
  return new CacheUnavailable({
    operation: "deletePattern",
    cause: new RangeError(
      `cache-aside: deletePattern's pattern has ${bytes} bytes in UTF-8, more than the ${maxPatternBytes} allowed; ` +
        "nothing was deleted"
    ),
    replied: true
  })
}
