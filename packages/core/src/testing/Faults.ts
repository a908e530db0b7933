/**
 * Fault schedules for tests, as data and as fast-check arbitraries: what the cache store does
 * (down, flapping, slow, hung, healthy again) and what the lookup does (failing, slow, healthy
 * again). `applyStoreFault` sets one on a `FaultInjection` control; the lookup faults are applied
 * by the testing `Database`.
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as FastCheck from "effect/FastCheck"
import type { FaultInjection } from "../FaultInjection.js"

/**
 * A state of the cache store: `Down` fails every call, `Flapping` fails the next `failures` calls,
 * `Slow` adds `latency` to every call, `Hung` answers nothing until healed, `Healthy` heals.
 *
 * @since 0.1.0
 */
export type StoreFault =
  | { readonly _tag: "Healthy" }
  | { readonly _tag: "Down" }
  | { readonly _tag: "Flapping"; readonly failures: number }
  | { readonly _tag: "Slow"; readonly latency: Duration.Duration }
  | { readonly _tag: "Hung" }

/**
 * A state of the lookup (the data source): `Failing` fails the next `failures` loads, `Slow` reads
 * the row and then takes `latency` to answer (a response in transit: the answer may be stale by
 * the time it arrives), `Healthy` heals.
 *
 * @since 0.1.0
 */
export type LookupFault =
  | { readonly _tag: "Healthy" }
  | { readonly _tag: "Failing"; readonly failures: number }
  | { readonly _tag: "Slow"; readonly latency: Duration.Duration }

/**
 * Latencies the arbitraries choose from: below, around and above the resilient store's default
 * 250 millis timeout, and a lookup slower than a typical `lookupTimeout`.
 *
 * @since 0.1.0
 */
export const latencies: ReadonlyArray<Duration.Duration> = [
  Duration.millis(5),
  Duration.millis(100),
  Duration.millis(300),
  Duration.seconds(2)
]

/**
 * Any store fault (`Hung` only when `hung` is set: a hung store needs a timeout above it, such as
 * `ResilientCacheStore`'s, or gets wait until it heals).
 *
 * @example
 * ```ts
 * import { FastCheck } from "effect"
 * import { Faults } from "@cache-aside/core/testing"
 *
 * const samples = FastCheck.sample(Faults.storeFault(), { numRuns: 5, seed: 42 })
 * ```
 *
 * @since 0.1.0
 */
export const storeFault = (options: { readonly hung?: boolean | undefined } = {}): FastCheck.Arbitrary<StoreFault> =>
  FastCheck.oneof(
    FastCheck.constant<StoreFault>({ _tag: "Healthy" }),
    FastCheck.constant<StoreFault>({ _tag: "Down" }),
    FastCheck.integer({ min: 1, max: 6 }).map((failures): StoreFault => ({ _tag: "Flapping", failures })),
    FastCheck.constantFrom(...latencies).map((latency): StoreFault => ({ _tag: "Slow", latency })),
    ...(options.hung === true ? [FastCheck.constant<StoreFault>({ _tag: "Hung" })] : [])
  )

/**
 * Any lookup fault.
 *
 * @example
 * ```ts
 * import { FastCheck } from "effect"
 * import { Faults } from "@cache-aside/core/testing"
 *
 * const samples = FastCheck.sample(Faults.lookupFault, { numRuns: 5, seed: 42 })
 * ```
 *
 * @since 0.1.0
 */
export const lookupFault: FastCheck.Arbitrary<LookupFault> = FastCheck.oneof(
  FastCheck.constant<LookupFault>({ _tag: "Healthy" }),
  FastCheck.integer({ min: 1, max: 4 }).map((failures): LookupFault => ({ _tag: "Failing", failures })),
  FastCheck.constantFrom(...latencies).map((latency): LookupFault => ({ _tag: "Slow", latency }))
)

/**
 * One step of a fault schedule: after `after` of virtual time, the store (or the lookup) enters a state.
 *
 * @since 0.1.0
 */
export type ScheduledFault =
  | { readonly after: Duration.Duration; readonly store: StoreFault }
  | { readonly after: Duration.Duration; readonly lookup: LookupFault }

/**
 * A fault schedule: a list of store and lookup states with the virtual time between them, for a
 * test that replays it with `TestClock` while it drives traffic.
 *
 * @example
 * ```ts
 * import { FastCheck } from "effect"
 * import { Faults } from "@cache-aside/core/testing"
 *
 * const schedule = FastCheck.sample(Faults.schedule({ maxLength: 4 }), { numRuns: 1, seed: 1 })[0]
 * ```
 *
 * @since 0.1.0
 */
export const schedule = (
  options: { readonly maxLength?: number | undefined; readonly hung?: boolean | undefined } = {}
): FastCheck.Arbitrary<ReadonlyArray<ScheduledFault>> =>
  FastCheck.array(
    FastCheck.tuple(
      FastCheck.integer({ min: 0, max: 5000 }).map(Duration.millis),
      FastCheck.oneof(
        storeFault(options).map((store) => ({ store })),
        lookupFault.map((lookup) => ({ lookup }))
      )
    ).map(([after, fault]): ScheduledFault => ({ after, ...fault })),
    { maxLength: options.maxLength ?? 8 }
  )

/**
 * Puts the store of a `FaultInjection` control into a state (healing the previous one first).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { FaultInjection } from "@cache-aside/core"
 * import { Faults } from "@cache-aside/core/testing"
 *
 * const down = Effect.flatMap(FaultInjection.FaultInjection, (control) =>
 *   Faults.applyStoreFault(control, { _tag: "Down" }))
 * ```
 *
 * @since 0.1.0
 */
export const applyStoreFault = (control: FaultInjection["Type"], fault: StoreFault): Effect.Effect<void> =>
  Effect.zipRight(control.heal, applyOnly(control, fault))

const applyOnly = (control: FaultInjection["Type"], fault: StoreFault): Effect.Effect<void> => {
  switch (fault._tag) {
    case "Healthy":
      return Effect.void
    case "Down":
      return control.failAll()
    case "Flapping":
      return control.failNext(fault.failures)
    case "Slow":
      return control.latency(fault.latency)
    case "Hung":
      return control.hang()
  }
}

/**
 * A short description of a fault, for counterexamples and logs.
 *
 * @example
 * ```ts
 * import { Duration } from "effect"
 * import { Faults } from "@cache-aside/core/testing"
 *
 * Faults.describe({ _tag: "Slow", latency: Duration.millis(300) }) // "slow (300ms)"
 * ```
 *
 * @since 0.1.0
 */
export const describe = (fault: StoreFault | LookupFault): string => {
  switch (fault._tag) {
    case "Healthy":
      return "healthy"
    case "Down":
      return "down"
    case "Hung":
      return "hung"
    case "Flapping":
      return `flapping (next ${fault.failures} calls fail)`
    case "Failing":
      return `failing (next ${fault.failures} loads fail)`
    case "Slow":
      return `slow (${Duration.format(fault.latency)})`
  }
}
