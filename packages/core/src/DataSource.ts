/**
 * The data store behind the cache, as a typed service: load one key (and optionally many at once).
 * `CacheAside.make` accepts a `DataSource` or a plain lookup function. The in-memory twin counts
 * its loads, so an application's tests can assert "one lookup".
 *
 * @since 0.1.0
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

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
