/**
 * The database of a test: rows in memory, a `DataSource` over them that fails or slows down on
 * demand (`LookupFault`), and a hook that sees every write (the model-based property uses it to know
 * which values a key held while a read ran).
 *
 * @since 0.1.0
 */
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as MutableHashMap from "effect/MutableHashMap"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import type { DataSource } from "../DataSource.js"
import type { LookupFault } from "./Faults.js"

/**
 * The failure of a load while a `Failing` lookup fault is on.
 *
 * @example
 * ```ts
 * import { Database } from "@cache-aside/core/testing"
 * const error = new Database.LookupFailed({ key: "42" })
 * ```
 *
 * @since 0.1.0
 */
export class LookupFailed extends Schema.TaggedError<LookupFailed>("@cache-aside/core/testing/LookupFailed")(
  "LookupFailed",
  { key: Schema.String }
) {}

/**
 * @since 0.1.0
 */
export interface Database<K, A> {
  /** The data source over the rows; an injected failure is a `LookupFailed`. */
  readonly source: DataSource<K, A, LookupFailed>
  /** The data source over the rows, with injected failures made by `failure` (to fit a source tag's error type). */
  readonly sourceFailingWith: <E>(failure: (key: K) => E) => DataSource<K, A, E>
  /** Writes a row, as the application's write path does before it invalidates the cache. */
  readonly write: (key: K, value: A) => Effect.Effect<void>
  /** Removes a row. */
  readonly remove: (key: K) => Effect.Effect<void>
  /** The current row. */
  readonly peek: (key: K) => Option.Option<A>
  /** Sets how the lookup behaves from now on. */
  readonly setFault: (fault: LookupFault) => Effect.Effect<void>
  /** Whether a lookup fault is on. */
  readonly faulty: () => boolean
  /** Keys loaded so far (a batch of n keys counts n). */
  readonly loads: () => number
  /** Called on every write and remove, with the key and its new row. */
  readonly onWrite: (listener: (key: K, value: Option.Option<A>) => void) => void
}

/**
 * Makes a database with its rows. Keys are compared with Effect's `Equal` (primitives by value,
 * `Data` and Schema classes structurally). A `Slow` lookup reads the row first and answers after the
 * latency (on Effect's `Clock`), as a query whose response is in transit; so does every load with
 * the `latency` option.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Database } from "@cache-aside/core/testing"
 *
 * const program = Effect.gen(function* () {
 *   const db = yield* Database.make<number, string>([[1, "Ada"]])
 *   yield* db.setFault({ _tag: "Failing", failures: 1 })
 *   const failed = yield* Effect.either(db.source.load(1)) // Left(LookupFailed)
 *   const found = yield* db.source.load(1) // Some("Ada")
 * })
 * ```
 *
 * @since 0.1.0
 */
export const make = <K, A>(
  rows: Iterable<readonly [K, A]> = [],
  options: {
    /** How long every load takes to answer (after it read the rows), on Effect's `Clock`. Default: no time. */
    readonly latency?: Duration.DurationInput | undefined
  } = {}
): Effect.Effect<Database<K, A>> =>
  Effect.sync(() => {
    const latency = Duration.decode(options.latency ?? Duration.zero)
    const table = MutableHashMap.fromIterable(rows)
    const listeners: Array<(key: K, value: Option.Option<A>) => void> = []
    let fault: LookupFault = { _tag: "Healthy" }
    let failures = 0
    let loads = 0

    const notify = (key: K) => {
      const value = MutableHashMap.get(table, key)
      for (const listener of listeners) listener(key, value)
    }

    const sourceFailingWith = <E>(failure: (key: K) => E): DataSource<K, A, E> => {
      /** Reads the rows at once; a slow lookup answers them after its latency. */
      const answer = <X>(keys: ReadonlyArray<K>, read: () => X): Effect.Effect<X, E> =>
        Effect.suspend(() => {
          loads += keys.length
          if (failures > 0) {
            failures--
            return Effect.fail(failure(keys[0]!))
          }
          const rows = read()
          const wait = fault._tag === "Slow" ? fault.latency : latency
          return Duration.toMillis(wait) > 0 ? Effect.as(Effect.sleep(wait), rows) : Effect.succeed(rows)
        })
      return {
        load: (key) => answer([key], () => MutableHashMap.get(table, key)),
        loadMany: (keys) => answer(keys, () => keys.map((key) => [key, MutableHashMap.get(table, key)] as const))
      }
    }

    return {
      source: sourceFailingWith((key) => new LookupFailed({ key: String(key) })),
      sourceFailingWith,
      write: (key, value) =>
        Effect.sync(() => {
          MutableHashMap.set(table, key, value)
          notify(key)
        }),
      remove: (key) =>
        Effect.sync(() => {
          MutableHashMap.remove(table, key)
          notify(key)
        }),
      peek: (key) => MutableHashMap.get(table, key),
      setFault: (next) =>
        Effect.sync(() => {
          fault = next
          failures = next._tag === "Failing" ? next.failures : 0
        }),
      faulty: () => fault._tag !== "Healthy" && (fault._tag !== "Failing" || failures > 0),
      loads: () => loads,
      onWrite: (listener) => {
        listeners.push(listener)
      }
    }
  })
