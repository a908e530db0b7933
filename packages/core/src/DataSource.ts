/**
 * The data store behind the cache, as a typed service: load one key (and optionally many at once).
 * `CacheAside.make` accepts a `DataSource` or a plain lookup function.
 *
 * - `Tag` declares an application's data source as a service, so that tests swap it by `Layer`;
 * - `fromRequestResolver` builds one from an Effect `RequestResolver` (a batch of lookups is one
 *   request batch, results matched by request, never by position);
 * - `batched` gathers the loads of different fibers made within one window into one `loadMany`;
 * - `memory` is the in-memory twin: it counts its loads, so tests can assert "one lookup".
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as FiberSet from "effect/FiberSet"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import type * as Request from "effect/Request"
import type * as RequestResolver from "effect/RequestResolver"
import type * as Scope from "effect/Scope"

/**
 * @since 0.1.0
 */
export interface DataSource<in out K, out A, out E = never, out R = never> {
  /** Loads one key; `None` means "not found" (and is cached as such). */
  readonly load: (key: K) => Effect.Effect<Option.Option<A>, E, R>
  /**
   * Loads many keys at once (for `getMany`). Results are matched to keys by key, never by
   * position: answer `[key, Option.some(value)]` for a found row and `[key, Option.none()]` for a
   * row that does not exist. A key left out of the answer is not taken as "not found": it is
   * loaded again on its own with `load`.
   */
  readonly loadMany?: LoadMany<K, A, E, R> | undefined
}

/**
 * A batch lookup: the pairs `[key, result]` it found, in any order.
 *
 * @since 0.1.0
 */
export type LoadMany<in out K, out A, out E = never, out R = never> = (
  keys: ReadonlyArray<K>
) => Effect.Effect<Iterable<readonly [K, Option.Option<A>]>, E, R>

/**
 * Makes a data source from a lookup function and an optional batch lookup.
 *
 * @example
 * ```ts
 * import { Effect, Option } from "effect"
 * import { DataSource } from "@cache-aside/core"
 *
 * const users = DataSource.make((id: number) => Effect.succeed(Option.some({ id, name: "Ada" })))
 * ```
 *
 * @since 0.1.0
 */
export const make = <K, A, E, R>(
  load: (key: K) => Effect.Effect<Option.Option<A>, E, R>,
  loadMany?: LoadMany<K, A, E, R>
): DataSource<K, A, E, R> => ({ load, loadMany })

/**
 * An in-memory data source that counts its loads.
 *
 * @since 0.1.0
 */
export interface Memory<K, A> extends DataSource<K, A> {
  /** Writes a row (as the application's write path would). */
  readonly write: (key: K, value: A) => Effect.Effect<void>
  /** Removes a row. */
  readonly remove: (key: K) => Effect.Effect<void>
  /** The current row, read without counting a load. */
  readonly peek: (key: K) => Option.Option<A>
  /** How many keys were loaded so far (a `loadMany` of n keys counts n). */
  readonly loads: Effect.Effect<number>
  /** How many calls were made to `load` and `loadMany`. */
  readonly calls: Effect.Effect<number>
}

/**
 * Makes an in-memory data source, optionally with a latency per load (for stampede tests and
 * demos; it uses Effect's `Clock`, so `TestClock` controls it).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DataSource } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const users = yield* DataSource.memory<number, string>([[1, "Ada"]])
 *   yield* users.load(1)
 *   return yield* users.loads // 1
 * })
 * ```
 *
 * @since 0.1.0
 */
export const memory = <K, A>(
  entries: Iterable<readonly [K, A]> = [],
  options: { readonly latency?: Duration.DurationInput | undefined } = {}
): Effect.Effect<Memory<K, A>> =>
  Effect.sync(() => {
    const rows = new Map<K, A>(entries)
    let loads = 0
    let calls = 0
    const delay = options.latency === undefined ? Effect.void : Effect.sleep(options.latency)
    const read = (key: K): Option.Option<A> => rows.has(key) ? Option.some(rows.get(key) as A) : Option.none()
    return {
      load: (key) =>
        Effect.zipRight(
          Effect.sync(() => {
            loads++
            calls++
          }),
          Effect.zipRight(delay, Effect.sync(() => read(key)))
        ),
      loadMany: (keys) =>
        Effect.zipRight(
          Effect.sync(() => {
            loads += keys.length
            calls++
          }),
          Effect.zipRight(delay, Effect.sync(() => keys.map((key) => [key, read(key)] as const)))
        ),
      write: (key, value) => Effect.sync(() => void rows.set(key, value)),
      remove: (key) => Effect.sync(() => void rows.delete(key)),
      peek: read,
      loads: Effect.sync(() => loads),
      calls: Effect.sync(() => calls)
    }
  })

/**
 * Declares an application's data source as a service: a class tag whose service is a
 * `DataSource<K, A, E>` (its requirements captured when its layer is built), so that the
 * production layer (a database) and a test layer (`memory`) swap by `Layer`.
 *
 * @example
 * ```ts
 * import { Effect, Layer, Option } from "effect"
 * import { DataSource } from "@cache-aside/core"
 *
 * class UserSource extends DataSource.Tag("app/UserSource")<UserSource, number, string>() {}
 *
 * const Live = Layer.succeed(UserSource, DataSource.make((id: number) => Effect.succeed(Option.some(`user ${id}`))))
 * const Test = Layer.effect(UserSource, DataSource.memory<number, string>([[1, "Ada"]]))
 *
 * const program = Effect.flatMap(UserSource, (users) => users.load(1)).pipe(Effect.provide(Test))
 * ```
 *
 * @since 0.1.0
 */
export const Tag =
  <const Id extends string>(id: Id) => <Self, K, A, E = never>(): Context.TagClass<Self, Id, DataSource<K, A, E>> =>
    Context.Tag(id)<Self, DataSource<K, A, E>>()

/**
 * Makes a data source from an Effect `RequestResolver`: `load` is one `Effect.request`, and
 * `loadMany` sends every key as one request batch (`Effect.forEach` with batching), so a resolver
 * made with `RequestResolver.makeBatched` answers a `getMany` with one query. Each answer belongs
 * to its own request: results are matched by request, never by position.
 *
 * @example
 * ```ts
 * import { Effect, Option, Request, RequestResolver } from "effect"
 * import { DataSource } from "@cache-aside/core"
 *
 * interface GetUser extends Request.Request<Option.Option<string>> {
 *   readonly _tag: "GetUser"
 *   readonly id: number
 * }
 * const GetUser = Request.tagged<GetUser>("GetUser")
 *
 * // one query for the whole batch (e.g. SELECT ... WHERE id = ANY($1))
 * const resolver = RequestResolver.makeBatched((requests: Array<GetUser>) =>
 *   Effect.forEach(requests, (request) => Request.succeed(request, Option.some(`user ${request.id}`)), { discard: true })
 * )
 *
 * const users = DataSource.fromRequestResolver(resolver, (id: number) => GetUser({ id }))
 * // DataSource<number, string, never>
 * ```
 *
 * @since 0.1.0
 */
export const fromRequestResolver = <K, Req extends Request.Request<Option.Option<unknown>, unknown>>(
  resolver: RequestResolver.RequestResolver<Req>,
  request: (key: K) => Req
): DataSource<K, RequestValue<Req>, Request.Request.Error<Req>> => {
  const load = (key: K) =>
    Effect.request(request(key), resolver) as Effect.Effect<
      Option.Option<RequestValue<Req>>,
      Request.Request.Error<Req>
    >
  return {
    load,
    loadMany: (keys) =>
      Effect.forEach(keys, (key) => Effect.map(load(key), (found) => [key, found] as const), { batching: true })
  }
}

/**
 * The value a lookup request finds: `A` of a `Request<Option<A>, E>`.
 *
 * @since 0.1.0
 */
export type RequestValue<Req extends Request.Request<Option.Option<unknown>, unknown>> =
  Request.Request.Success<Req> extends Option.Option<infer A> ? A : never

/**
 * @since 0.1.0
 */
export interface BatchOptions {
  /**
   * How long the first load of a batch waits for others (on Effect's `Clock`). Default: no time,
   * only a few turns of the scheduler (`Effect.yieldNow`), enough for fibers already running to
   * join the batch without adding latency (and deterministic under `TestClock`).
   */
  readonly window?: Duration.DurationInput | undefined
  /** The most keys per `loadMany`; a full batch is sent at once. Default 1000. */
  readonly maxBatchSize?: number | undefined
}

/** Turns of the scheduler the default window waits. */
const defaultWindowYields = 8

interface Waiter<A, E> {
  readonly key: unknown
  readonly deferred: Deferred.Deferred<Option.Option<A>, E>
}

/**
 * Gathers the loads of a data source made by different fibers within one window into one
 * `loadMany` (a data loader), so that concurrent cache misses of distinct keys from different call
 * sites reach the database as one query. Keys are deduplicated with Effect's `Equal`; answers are
 * matched by key, and a key the batch left out is loaded on its own. A batch runs in a background
 * fiber owned by the `Scope`: closing the scope stops it (its waiters are interrupted); a waiter that
 * is interrupted leaves the batch running for the others. A data source without `loadMany` is
 * returned unchanged.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { DataSource } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const db = yield* DataSource.memory<number, string>([[1, "Ada"], [2, "Grace"]])
 *   const users = yield* DataSource.batched(db)
 *   yield* Effect.all([users.load(1), users.load(2)], { concurrency: "unbounded" })
 *   return yield* db.calls // 1: both keys went in one loadMany
 * }).pipe(Effect.scoped)
 * ```
 *
 * @since 0.1.0
 */
export const batched = <K, A, E, R>(
  source: DataSource<K, A, E, R>,
  options: BatchOptions = {}
): Effect.Effect<DataSource<K, A, E>, never, Scope.Scope | R> =>
  Effect.gen(function*() {
    const loadMany = source.loadMany
    const context = yield* Effect.context<R>()
    // the source's functions are called inside effects: one that throws is a defect of that load
    // (its waiters get it), never a batch fiber dying with its waiters left waiting
    const load = (key: K) => Effect.provide(Effect.suspend(() => source.load(key)), context)
    if (loadMany === undefined) return { load, loadMany: undefined }
    let pending: Array<Waiter<A, E>> = []
    let closed = false
    const interruptAll = (batch: ReadonlyArray<Waiter<A, E>>) =>
      Effect.forEach(batch, (waiter) => Deferred.interrupt(waiter.deferred), { discard: true })
    // runs after the batch fibers are interrupted (finalizers run in reverse): waiters of a batch
    // whose fiber never started are interrupted too, and later loads are refused
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        closed = true
        const batch = pending
        pending = []
        return interruptAll(batch)
      })
    )
    const fibers = yield* FiberSet.make()
    const maxBatchSize = Math.max(1, Math.floor(options.maxBatchSize ?? 1000))
    const wait = options.window === undefined
      ? Effect.repeatN(Effect.yieldNow(), defaultWindowYields - 1)
      : Effect.sleep(Duration.decode(options.window))

    /** Answers each waiter from the batch's pairs, matched by key; an unanswered key loads alone. */
    const answer = (batch: ReadonlyArray<Waiter<A, E>>, keys: ReadonlyArray<K>) =>
      Effect.flatMap(Effect.exit(Effect.provide(Effect.suspend(() => loadMany(keys)), context)), (exit) => {
        if (Exit.isFailure(exit)) {
          return Effect.forEach(batch, (waiter) => Deferred.failCause(waiter.deferred, exit.cause), { discard: true })
        }
        const found = MutableHashMap.fromIterable(exit.value)
        return Effect.forEach(batch, (waiter) => {
          const result = MutableHashMap.get(found, waiter.key)
          return Option.isSome(result)
            ? Deferred.succeed(waiter.deferred, result.value)
            : Deferred.complete(waiter.deferred, load(waiter.key as K))
        }, { concurrency: "unbounded", discard: true })
      })

    /** Sends what is pending as one batch; if interrupted (the scope closed), its waiters are too. */
    const flush = Effect.suspend(() => {
      const batch = pending
      pending = []
      if (batch.length === 0) return Effect.void
      const keys = MutableHashMap.keys(MutableHashMap.fromIterable(batch.map((waiter) => [waiter.key as K, true])))
      return Effect.onInterrupt(answer(batch, keys), () => interruptAll(batch))
    })

    /** The first load of a batch waits for the window, then sends the batch. */
    const leadBatch = Effect.zipRight(wait, flush)

    return {
      load: (key: K) =>
        Effect.suspend(() => {
          if (closed) return Effect.interrupt
          const deferred = Deferred.unsafeMake<Option.Option<A>, E>(FiberId.none)
          pending.push({ key, deferred })
          const start = pending.length === 1
            ? FiberSet.run(fibers, leadBatch)
            : pending.length >= maxBatchSize
            ? FiberSet.run(fibers, flush)
            : Effect.void
          return Effect.zipRight(start, Deferred.await(deferred))
        }),
      loadMany: (keys: ReadonlyArray<K>) => Effect.provide(Effect.suspend(() => loadMany(keys)), context)
    }
  })
