import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as FastCheck from "effect/FastCheck"
import * as Schema from "effect/Schema"
import { CacheAside, CacheStore } from "../src/index.js"
import type { Database } from "../src/testing/index.js"
import { Property } from "../src/testing/index.js"

/** Generous bound against a hang of the whole property (it runs on virtual time). */
const propertyTimeout = 120_000

const keys = FastCheck.integer({ min: 1, max: 3 })
const values = FastCheck.constantFrom("a", "b", "c")

const makeCache = (db: Database.Database<number, string>) =>
  CacheAside.make({
    namespace: "user",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup: db.source,
    ttl: "1 hour"
  })

/** The application as it should be: write the database, then invalidate. */
const correct = (db: Database.Database<number, string>) =>
  Effect.map(makeCache(db), (cache): Property.System<number, string, unknown> => ({
    cache,
    write: (id, name) => Effect.zipRight(db.write(id, name), cache.invalidate(id))
  }))

/** Planted bug: the write path forgets to invalidate. */
const missingInvalidation = (db: Database.Database<number, string>) =>
  Effect.map(makeCache(db), (cache): Property.System<number, string, unknown> => ({
    cache,
    write: (id, name) => db.write(id, name)
  }))

/** Planted bug: a store whose compare-and-set writes unconditionally, so a fill ignores the lease. */
const ignoreLease = (store: CacheStore.CacheStore["Type"]): CacheStore.CacheStore["Type"] =>
  CacheStore.CacheStore.of({
    ...store,
    compareAndSet: (key, _expected, value, ttl) => Effect.as(store.set(key, value, ttl), true)
  })

const found = <A>(result: Either.Either<A, Property.CounterExample>): Property.CounterExample => {
  assert.isTrue(Either.isLeft(result), "the property found no counterexample")
  return (result as Either.Left<Property.CounterExample, A>).left
}

describe("Property (the testing kit's model-based property)", () => {
  it.effect(
    "passes on a correct cache: concurrency, interrupts, store and lookup faults, clock ticks",
    () =>
      Effect.gen(function*() {
        const report = yield* Property.check({ keys, values, make: correct })
        assert.strictEqual(report.runs, 100)
      }),
    propertyTimeout
  )

  it.effect(
    "passes on a cache that refreshes in the background: stale-while-revalidate, XFetch, fail-safe",
    () =>
      Effect.gen(function*() {
        const refreshing = (db: Database.Database<number, string>) =>
          Effect.map(
            CacheAside.make({
              namespace: "user",
              key: (id: number) => String(id),
              schema: Schema.String,
              lookup: db.source,
              ttl: "1 second",
              staleWhileRevalidate: "1 minute",
              earlyExpiration: { beta: 5 },
              failSafe: { maxStale: "1 hour", throttle: "1 second" },
              lookupTimeout: { soft: "50 millis" }
            }),
            (cache): Property.System<number, string, unknown> => ({
              cache,
              write: (id, name) => Effect.zipRight(db.write(id, name), cache.invalidate(id))
            })
          )
        const report = yield* Property.check({ keys, values, make: refreshing })
        assert.strictEqual(report.runs, 100)
      }),
    propertyTimeout
  )

  it.effect(
    "passes on a cache with a near cache (L1) per instance, kept coherent by the bus",
    () =>
      Effect.gen(function*() {
        const near = (db: Database.Database<number, string>) =>
          Effect.map(
            CacheAside.make({
              namespace: "user",
              key: (id: number) => String(id),
              schema: Schema.String,
              lookup: db.source,
              ttl: "1 hour",
              nearCache: { maxEntries: 100, ttl: "1 minute" }
            }),
            (cache): Property.System<number, string, unknown> => ({
              cache,
              write: (id, name) => Effect.zipRight(db.write(id, name), cache.invalidate(id))
            })
          )
        const report = yield* Property.check({ keys, values, make: near })
        assert.strictEqual(report.runs, 100)
      }),
    propertyTimeout
  )

  it.effect("finds a missing invalidation, on every run, as a short counterexample", () =>
    Effect.gen(function*() {
      const first = found(yield* Effect.either(Property.check({ keys, values, make: missingInvalidation })))
      assert.include(first.violation, "stale")
      assert.isAtMost(first.commands.length, 4, first.message)
      assert.isTrue(first.commands.some((command) => command.includes("write(")), first.message)
      const again = found(yield* Effect.either(Property.check({ keys, values, make: missingInvalidation })))
      deepStrictEqual(again.commands, first.commands, "deterministic: the same counterexample")
      assert.strictEqual(again.violation, first.violation)
    }), propertyTimeout)

  it.effect(
    "finds a fill that ignores the lease (a load that raced an invalidation caches its older value)",
    () =>
      Effect.gen(function*() {
        const options: Property.Options<number, string, unknown, never> = {
          keys,
          values,
          make: correct,
          store: { resilient: true, wrapStore: ignoreLease }
        }
        const first = found(yield* Effect.either(Property.check(options)))
        assert.include(first.violation, "stale")
        // a load in flight on one instance, a write (and invalidation) by the other: only the lease stops the fill
        const race = first.commands
          .map((command) => /^race: fork \[(\d)\] get\(.*\), \[(\d)\] write\(/.exec(command))
          .find((match) => match !== null)
        assert.isDefined(race, first.message)
        assert.notStrictEqual(race![1], race![2], `on two instances: ${first.message}`)
        const again = found(yield* Effect.either(Property.check(options)))
        deepStrictEqual(again.commands, first.commands, "deterministic: the same counterexample")
      }),
    propertyTimeout
  )

  it.effect("without the resilient store, an invalidation lost in an outage is found", () =>
    Effect.gen(function*() {
      const lost = found(yield* Effect.either(Property.check({ keys, values, make: correct, store: {} })))
      assert.include(lost.violation, "stale")
      assert.isTrue(lost.commands.some((command) => command.startsWith("store")), lost.message)
    }), propertyTimeout)
})
