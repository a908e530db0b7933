/**
 * A cache for callers outside Effect: the methods of a `CacheAside` handle as Promises, run on a
 * `Runtime` you give (its logger, tracer and fiber refs; from a `ManagedRuntime`,
 * `await managed.runtime()`).
 *
 * Each method does what `Runtime.runPromise(runtime, cache.method(...))` does, with the same
 * results and the same rejections (a `FiberFailure` carrying the cause, as `runPromise` rejects),
 * and takes an optional `AbortSignal` as `runPromise` does. One difference, in cost only: a `get` that the
 * near cache answers, or that joins a get of the same key already in flight, is answered without
 * starting a fiber (entering the runtime costs a few microseconds of CPU per call, more than a
 * near-cache hit itself). Such a get keeps every guarantee of `CacheAside.get`: the same near
 * cache checks, the same metrics (`hits`, `nearHits`, `coalesced`), and a joiner whose leader was
 * interrupted runs the get again. A get given a `signal`, or made on a cache with `spanEveryGet`,
 * always runs as an effect.
 *
 * @since 0.1.0
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as ManagedRuntime from "effect/ManagedRuntime"
import type * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type { CacheAside } from "./CacheAside.js"
import { InvalidOptions } from "./CacheAside.js"
import { implOf } from "./internal/cacheAside.js"
import { Flight, ReentrantGet, Retry } from "./internal/flight.js"

/**
 * Options of a call: `signal` interrupts the call's fiber when aborted (as `runPromise`'s); the
 * Promise then rejects with the interrupt. A get given a signal always runs as an effect.
 *
 * @example
 * ```ts
 * import { Effect, Option, Schema } from "effect"
 * import { CacheAside, MemoryCacheStore, PromiseCache } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* CacheAside.make({
 *     namespace: "user",
 *     key: (id: number) => String(id),
 *     schema: Schema.String,
 *     lookup: (id: number) => Effect.succeed(Option.some(`user ${id}`)),
 *     ttl: "1 hour"
 *   })
 *   const cached = PromiseCache.make(users, yield* Effect.runtime<never>())
 *   // give up on the call after 200 ms (a request deadline); other gets of the key are not affected
 *   return yield* Effect.promise(() => cached.get(42, { signal: AbortSignal.timeout(200) }))
 * }).pipe(Effect.scoped, Effect.provide(MemoryCacheStore.layer()))
 * ```
 *
 * @since 0.1.0
 */
export interface CallOptions {
  readonly signal?: AbortSignal | undefined
}

/**
 * A `CacheAside` handle's methods as Promises (see the module's documentation), made by `make`.
 * A rejection is a `FiberFailure`; the typed error (the lookup's, or `LookupTimeout`) is in its
 * cause, as the second example shows.
 *
 * @example
 * ```ts
 * import type { PromiseCache } from "@cache-aside/core"
 *
 * // a plain async function, as a request handler outside Effect would be
 * const userName = async (users: PromiseCache.PromiseCache<number, string, never>, id: number) => {
 *   const user = await users.get(id)
 *   return user._tag === "Some" ? user.value : "unknown"
 * }
 * ```
 *
 * @example
 * ```ts
 * import { Cause, Option, Runtime, Schema } from "effect"
 * import type { PromiseCache } from "@cache-aside/core"
 *
 * class DbError extends Schema.TaggedError<DbError>()("DbError", { message: Schema.String }) {}
 *
 * // the typed error back from a rejection
 * const userName = async (users: PromiseCache.PromiseCache<number, string, DbError>, id: number) => {
 *   try {
 *     const user = await users.get(id)
 *     return Option.getOrElse(user, () => "unknown")
 *   } catch (e) {
 *     if (Runtime.isFiberFailure(e)) {
 *       const error = Cause.failureOption(e[Runtime.FiberFailureCauseId])
 *       if (Option.isSome(error) && error.value instanceof DbError) return "database unavailable"
 *       // None: an interruption (an aborted signal, a closed cache) or a defect
 *     }
 *     throw e
 *   }
 * }
 * ```
 *
 * @since 0.1.0
 */
export interface PromiseCache<in out K, in out A, out E> {
  readonly namespace: string
  /** The handle the methods run. */
  readonly cache: CacheAside<K, A, E>
  /** `CacheAside.get`: near-cache hits and gets that join one in flight start no fiber. */
  readonly get: (key: K, options?: CallOptions) => Promise<Option.Option<A>>
  readonly getMany: (keys: Iterable<K>, options?: CallOptions) => Promise<Array<Option.Option<A>>>
  readonly getOption: (key: K, options?: CallOptions) => Promise<Option.Option<Option.Option<A>>>
  readonly refresh: (key: K, options?: CallOptions) => Promise<void>
  readonly set: (key: K, value: A, options?: CallOptions) => Promise<void>
  readonly invalidate: (key: K, options?: CallOptions) => Promise<void>
  readonly invalidateAll: (options?: CallOptions) => Promise<number>
  readonly invalidatePattern: (pattern: string, options?: CallOptions) => Promise<number>
}

/** What is wrong with `make`'s arguments (a JavaScript caller can pass anything), if anything. */
const problemWith = (cache: unknown, runtime: unknown): string | undefined => {
  if (typeof cache !== "object" || cache === null || typeof (cache as { get?: unknown }).get !== "function") {
    return "the first argument must be a cache made by CacheAside.make"
  }
  if (ManagedRuntime.isManagedRuntime(runtime)) {
    return "the runtime must be a Runtime, not a ManagedRuntime: pass `await managedRuntime.runtime()`"
  }
  const isRuntime = typeof runtime === "object" && runtime !== null && "context" in runtime &&
    "fiberRefs" in runtime && "runtimeFlags" in runtime
  return isRuntime ? undefined : "the second argument must be an Effect Runtime (e.g. `await managedRuntime.runtime()`)"
}

/**
 * The rejection `runPromise` gives for a failed cause: a `FiberFailure`, or what building it threw
 * (it renders the error, which throws for a bigint in it), as `runPromise` rejects then.
 */
const fiberFailure = (cause: Cause.Cause<unknown>): unknown => {
  try {
    return Runtime.makeFiberFailure(cause)
  } catch (thrown) {
    return thrown
  }
}

/** `runPromise`'s options: without a signal, none (its type has no room for an `undefined` one). */
const optionsOf = (options: CallOptions | undefined) =>
  options?.signal === undefined ? undefined : { signal: options.signal }

/**
 * Wraps a cache for callers outside Effect. Make it once, next to the cache, and share it. The
 * cache's methods need no services: any `Runtime` will do; it gives them its logger, tracer and
 * fiber refs. (A `Runtime`, not a `ManagedRuntime`: one that is disposed fails every call, which a
 * get answered without entering it could not do.) Throws `InvalidOptions` when `cache` is not a
 * cache or `runtime` not a `Runtime`.
 *
 * Close the cache's scope only after its last call: afterwards a get that has to load rejects with
 * an interruption ("All fibers interrupted without errors"), while a key still cached may answer.
 *
 * @example
 * ```ts
 * import { Effect, Exit, ManagedRuntime, Option, Schema, Scope } from "effect"
 * import { CacheAside, MemoryCacheStore, PromiseCache } from "@cache-aside/core"
 *
 * const runtime = ManagedRuntime.make(MemoryCacheStore.layer())
 * // the cache's background work lives in this scope: close it at shutdown
 * const scope = await runtime.runPromise(Scope.make())
 * const users = PromiseCache.make(
 *   await runtime.runPromise(
 *     Scope.extend(
 *       CacheAside.make({
 *         namespace: "user",
 *         key: (id: number) => String(id),
 *         schema: Schema.String,
 *         lookup: (id: number) => Effect.succeed(Option.some(`user ${id}`)),
 *         ttl: "1 hour",
 *         nearCache: { maxEntries: 10_000, ttl: "1 minute" }
 *       }),
 *       scope
 *     )
 *   ),
 *   await runtime.runtime()
 * )
 * const user = await users.get(42) // Option.some("user 42")
 * await runtime.runPromise(Scope.close(scope, Exit.void))
 * await runtime.dispose()
 * ```
 *
 * @since 0.1.0
 */
export const make = <K, A, E>(cache: CacheAside<K, A, E>, runtime: Runtime.Runtime<never>): PromiseCache<K, A, E> => {
  const problem = problemWith(cache, runtime)
  if (problem !== undefined) throw new InvalidOptions({ message: `PromiseCache.make: ${problem}` })
  // a signal already aborted: the rejection runPromise gives an interrupted call, without starting
  // the call (runPromise would start it, and its lookup, lease and all, before the interrupt lands)
  const run = <X, Y>(effect: Effect.Effect<X, Y>, options?: CallOptions): Promise<X> =>
    Runtime.runPromise(runtime, options?.signal?.aborted === true ? Effect.interrupt : effect, optionsOf(options))
  const impl = implOf(cache)
  const ran = (key: K, options?: CallOptions) => run(cache.get(key), options)
  const get = impl === undefined ? ran : (key: K, options?: CallOptions): Promise<Option.Option<A>> => {
    if (options?.signal !== undefined) return ran(key, options)
    const now = impl.getWithoutFiber(key)
    if (now === undefined) return ran(key)
    if (now instanceof ReentrantGet) return Promise.reject(fiberFailure(Cause.die(now)))
    if (!(now instanceof Flight)) return Promise.resolve(now)
    return new Promise((resolve, reject) =>
      impl.flights.whenAnswered(now, (outcome) => {
        // the leader was interrupted: get again, as a joining fiber does, but not from inside the
        // flight's bookkeeping that calls this (a microtask later, as a fiber would resume)
        if (outcome === Retry) queueMicrotask(() => resolve(run(impl.retry(key, now))))
        else if (Exit.isSuccess(outcome)) resolve(outcome.value)
        else reject(fiberFailure(outcome.cause))
      })
    )
  }
  return {
    namespace: cache.namespace,
    cache,
    get,
    getMany: (keys, options) => run(cache.getMany(keys), options),
    getOption: (key, options) => run(cache.getOption(key), options),
    refresh: (key, options) => run(cache.refresh(key), options),
    set: (key, value, options) => run(cache.set(key, value), options),
    invalidate: (key, options) => run(cache.invalidate(key), options),
    invalidateAll: (options) => run(cache.invalidateAll, options),
    invalidatePattern: (pattern, options) => run(cache.invalidatePattern(pattern), options)
  }
}
