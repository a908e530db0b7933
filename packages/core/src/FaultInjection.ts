/**
 * A `CacheStore` wrapper that misbehaves on demand, so that an application's tests can show what
 * happens when the cache fails: the next N operations fail, every operation fails until healed,
 * every operation is slow, or no operation answers at all (a hung server). A `FaultInjection`
 * service controls it at run time and counts the operations it saw.
 *
 * Latency and hangs wait on Effect's `Clock`, so `TestClock` drives them.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import { CacheStore, CacheUnavailable, mapOperations, operations as storeOperations } from "./CacheStore.js"
import type { Operation as StoreOperation } from "./CacheStore.js"

/**
 * The store operations a fault can target.
 *
 * @since 0.1.0
 */
export type Operation = StoreOperation

/**
 * @since 0.1.0
 */
export const operations: ReadonlyArray<Operation> = storeOperations

/**
 * The cause of a `CacheUnavailable` made up by `FaultInjection`.
 *
 * @example
 * ```ts
 * import { CacheStore, FaultInjection } from "@cache-aside/core"
 *
 * const injected = (error: CacheStore.CacheUnavailable) => error.cause instanceof FaultInjection.InjectedFault
 * ```
 *
 * @since 0.1.0
 */
export class InjectedFault extends Schema.TaggedError<InjectedFault>("@cache-aside/core/InjectedFault")(
  "InjectedFault",
  { message: Schema.String }
) {}

/**
 * Which operations a fault applies to. Default: all of them.
 *
 * @since 0.1.0
 */
export interface Target {
  readonly operations?: ReadonlyArray<Operation> | undefined
}

/**
 * What the faulty store saw: calls per operation, all calls, calls failed on purpose, calls held
 * by a hang.
 *
 * @since 0.1.0
 */
export type Counts = { readonly [K in Operation]: number } & {
  readonly total: number
  readonly failed: number
  readonly hung: number
}

/**
 * The control of a faulty store. Faults combine: latency is added first, then a hang holds the
 * call, then an injected failure answers it; `heal` removes them all (held calls then go on to
 * the store, as after `SIGCONT`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultInjection, MemoryCacheStore } from "@cache-aside/core"
 *
 * const outage = Effect.gen(function* () {
 *   const faults = yield* FaultInjection.FaultInjection
 *   yield* faults.failAll({ operations: ["set"] }) // like Redis at maxmemory with noeviction
 *   // ... run the application, assert that reads still work ...
 *   yield* faults.heal
 *   return (yield* faults.counts).failed
 * }).pipe(Effect.provide(FaultInjection.layer(MemoryCacheStore.layer())))
 * ```
 *
 * @since 0.1.0
 */
export class FaultInjection extends Context.Tag("@cache-aside/core/FaultInjection")<FaultInjection, {
  /** Fails the next `n` operations (among the targeted ones) with `CacheUnavailable`. */
  readonly failNext: (n: number, target?: Target) => Effect.Effect<void>
  /** Fails every (targeted) operation until `heal`. */
  readonly failAll: (target?: Target) => Effect.Effect<void>
  /** Holds every (targeted) operation without an answer until `heal`. */
  readonly hang: (target?: Target) => Effect.Effect<void>
  /** Delays every (targeted) operation by `duration` until `heal`. */
  readonly latency: (duration: Duration.DurationInput, target?: Target) => Effect.Effect<void>
  /** Removes every fault and releases held operations. Counts are kept. */
  readonly heal: Effect.Effect<void>
  /** What the store saw so far. */
  readonly counts: Effect.Effect<Counts>
  /** Sets every count back to zero. */
  readonly resetCounts: Effect.Effect<void>
}>() {}

type Targets = ReadonlySet<Operation> | undefined

const targets = (target: Target | undefined): Targets =>
  target?.operations === undefined ? undefined : new Set(target.operations)

const applies = (targets: Targets, operation: Operation): boolean => targets === undefined || targets.has(operation)

const zeroCounts = (): Record<keyof Counts, number> => ({
  get: 0,
  getOrLease: 0,
  getMany: 0,
  set: 0,
  setIfAbsent: 0,
  compareAndSet: 0,
  compareAndDelete: 0,
  delete: 0,
  deletePattern: 0,
  total: 0,
  failed: 0,
  hung: 0
})

/**
 * Wraps a store: returns the faulty store and its control.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultInjection, MemoryCacheStore } from "@cache-aside/core"
 *
 * const program = Effect.gen(function* () {
 *   const { control, store } = yield* FaultInjection.make(yield* MemoryCacheStore.make())
 *   yield* control.failNext(1)
 *   const failed = yield* Effect.either(store.get("k")) // Left(CacheUnavailable)
 * })
 * ```
 *
 * @since 0.1.0
 */
export const make = (inner: CacheStore["Type"]): Effect.Effect<{
  readonly store: CacheStore["Type"]
  readonly control: FaultInjection["Type"]
}> =>
  Effect.sync(() => {
    const counts = zeroCounts()
    let failNext = 0
    let failNextTargets: Targets = undefined
    let failAll: Targets | false = false
    let hang: { readonly targets: Targets; readonly gate: Deferred.Deferred<void> } | undefined
    let latency: { readonly targets: Targets; readonly duration: Duration.Duration } | undefined

    const wrap = <A>(
      operation: Operation,
      run: Effect.Effect<A, CacheUnavailable>
    ): Effect.Effect<A, CacheUnavailable> =>
      Effect.suspend(() => {
        counts[operation]++
        counts.total++
        let fail = false
        if (failNext > 0 && applies(failNextTargets, operation)) {
          failNext--
          fail = true
        } else if (failAll !== false && applies(failAll, operation)) {
          fail = true
        }
        let effect: Effect.Effect<A, CacheUnavailable> = fail
          ? Effect.suspend(() => {
            counts.failed++
            return Effect.fail(
              new CacheUnavailable({
                operation,
                cause: new InjectedFault({ message: `injected fault in ${operation}` })
              })
            )
          })
          : run
        if (hang !== undefined && applies(hang.targets, operation)) {
          counts.hung++
          effect = Effect.zipRight(Deferred.await(hang.gate), effect)
        }
        if (latency !== undefined && applies(latency.targets, operation)) {
          effect = Effect.zipRight(Effect.sleep(latency.duration), effect)
        }
        return effect
      })

    const store = mapOperations(inner, wrap)

    const control = FaultInjection.of({
      failNext: (n, target) =>
        Effect.sync(() => {
          failNext = Math.max(0, Math.floor(n))
          failNextTargets = targets(target)
        }),
      failAll: (target) =>
        Effect.sync(() => {
          failAll = targets(target)
        }),
      hang: (target) =>
        Effect.sync(() => {
          hang = { targets: targets(target), gate: hang?.gate ?? Deferred.unsafeMake<void>(FiberId.none) }
        }),
      latency: (duration, target) =>
        Effect.sync(() => {
          latency = { targets: targets(target), duration: Duration.decode(duration) }
        }),
      heal: Effect.suspend(() => {
        const gate = hang?.gate
        failNext = 0
        failNextTargets = undefined
        failAll = false
        hang = undefined
        latency = undefined
        return gate === undefined ? Effect.void : Effect.asVoid(Deferred.succeed(gate, undefined))
      }),
      counts: Effect.sync((): Counts => ({ ...counts })),
      resetCounts: Effect.sync(() => {
        Object.assign(counts, zeroCounts())
      })
    })

    return { store, control }
  })

/**
 * Wraps the store of another layer; provides the faulty store and its `FaultInjection` control.
 *
 * @example
 * ```ts
 * import { Effect, Layer } from "effect"
 * import { FaultInjection, MemoryCacheStore, Metrics, ResilientCacheStore } from "@cache-aside/core"
 *
 * // the application's store as in production, over a memory store that fails on demand
 * const TestStore = ResilientCacheStore.layer(FaultInjection.layer(MemoryCacheStore.layer())).pipe(
 *   Layer.provideMerge(Metrics.layer)
 * )
 * ```
 *
 * @since 0.1.0
 */
export const layer = <E, R>(
  inner: Layer.Layer<CacheStore, E, R>
): Layer.Layer<CacheStore | FaultInjection, E, R> =>
  Layer.effectContext(
    Effect.flatMap(CacheStore, (store) =>
      Effect.map(make(store), ({ control, store }) =>
        Context.make(CacheStore, store).pipe(Context.add(FaultInjection, control))))
  ).pipe(Layer.provide(inner))
