/**
 * The store of a test in one layer: a memory store (expiry on Effect's `Clock`, so `TestClock`
 * drives TTLs), fault injection over it, optionally the resilient wrapper as in production, and
 * metrics.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { CacheStore } from "../CacheStore.js"
import type { InvalidStoreOptions } from "../CacheStore.js"
import * as FaultInjection from "../FaultInjection.js"
import * as MemoryCacheStore from "../MemoryCacheStore.js"
import * as Metrics from "../Metrics.js"
import * as ResilientCacheStore from "../ResilientCacheStore.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /** Options of the memory store. */
  readonly memory?: MemoryCacheStore.Options | undefined
  /**
   * Wraps the faulty store in `ResilientCacheStore` (timeouts, circuit breaker, invalidations
   * queued and replayed), as `@cache-aside/redis` does by default: `true` for its defaults, or its
   * options. Default `false`: faults reach the cache as they are.
   */
  readonly resilient?: boolean | ResilientCacheStore.Options | undefined
  /**
   * Wraps the memory store before faults are injected: to plant a bug in a store (a test of the
   * tests), or to observe every call.
   */
  readonly wrapStore?: ((store: CacheStore["Type"]) => CacheStore["Type"]) | undefined
}

/**
 * Memory store, fault injection and metrics in one layer: provides `CacheStore`, `FaultInjection`
 * and `Metrics`. Build it inside the test (`Effect.provide` in `it.effect`) so the store's clock is
 * the `TestClock`.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema, TestClock } from "effect"
 * import { CacheAside, FaultInjection } from "@cache-aside/core"
 * import { TestStore } from "@cache-aside/core/testing"
 *
 * const test = Effect.gen(function* () {
 *   const cache = yield* CacheAside.make({
 *     namespace: "user",
 *     key: (id: number) => String(id),
 *     schema: Schema.String,
 *     lookup: (id: number) => Effect.succeed(Option.some(`user ${id}`)),
 *     ttl: "1 minute"
 *   })
 *   yield* cache.get(1)
 *   yield* TestClock.adjust("2 minutes") // the entry expired
 *   const faults = yield* FaultInjection.FaultInjection
 *   yield* faults.failAll() // the store is down: gets fall back to the lookup
 *   return yield* cache.get(1)
 * }).pipe(Effect.provide(TestStore.layer()))
 * ```
 *
 * @since 0.1.0
 */
export const layer = (
  options: Options = {}
): Layer.Layer<CacheStore | FaultInjection.FaultInjection | Metrics.Metrics, InvalidStoreOptions> => {
  const wrapStore = options.wrapStore ?? ((store: CacheStore["Type"]) => store)
  const inner = Layer.effect(CacheStore, Effect.map(MemoryCacheStore.make(options.memory), wrapStore))
  const faulty = FaultInjection.layer(inner)
  const resilient = options.resilient === undefined || options.resilient === false
    ? faulty
    : ResilientCacheStore.layer(faulty, options.resilient === true ? {} : options.resilient)
  return Layer.provideMerge(resilient, Metrics.layer)
}
