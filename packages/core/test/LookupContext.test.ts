import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheStore, MemoryCacheStore, Metrics } from "../src/index.js"

class Database extends Context.Tag("test/Database")<Database, { readonly name: string }>() {}

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

describe("the lookup's requirements", () => {
  it.scoped("are captured by make: gets need nothing, and the captured services win over the caller's", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({
        namespace: "ctx",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: (id: number) => Effect.map(Database, (db) => Option.some(`${db.name}:${id}`)),
        ttl: "1 minute"
      }).pipe(Effect.provideService(Database, { name: "captured" }))
      // a caller without the Database (the handle's get needs nothing)
      assertSome(yield* cache.get(1), "captured:1")
      // a caller with another Database: the captured one is used
      assertSome(yield* cache.get(2).pipe(Effect.provideService(Database, { name: "caller" })), "captured:2")
      // a caller with the very same services: nothing to provide, same answer
      const same = yield* cache.get(3).pipe(Effect.provideService(Database, { name: "captured" }))
      assertSome(same, "captured:3")
      // a caller with no service at all (a bare runtime: none of the captured ones is there)
      const bare = yield* Effect.promise(() => Effect.runPromise(cache.get(4)))
      assertSome(bare, "captured:4")
    }).pipe(Effect.provide(Services)))
})

describe("the lookup's duration", () => {
  it.scoped("is the time the lookup took, by the cache's clock: stored with the entry (XFetch's delta)", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({
        namespace: "delta",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: (id: number) => Effect.as(Effect.sleep("250 millis"), Option.some(`v${id}`)),
        ttl: "1 hour"
      })
      yield* TestClock.adjust("5 seconds") // a clock far from zero: a sum of times would show
      const fiber = yield* Effect.fork(cache.get(1))
      yield* TestClock.adjust("250 millis")
      assertSome(yield* Fiber.join(fiber), "v1")
      const store = yield* CacheStore.CacheStore
      const bytes = yield* store.get(cache.keyOf(1))
      assert.isTrue(Option.isSome(bytes))
      if (Option.isNone(bytes)) return
      const envelope = JSON.parse(new TextDecoder().decode(bytes.value)) as { readonly d?: unknown }
      assert.strictEqual(envelope.d, 250)
    }).pipe(Effect.provide(Services)))
})

describe("the lookup's hard timeout", () => {
  it.scoped("names one key by its label, a batch by its size: LookupTimeout", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({
        namespace: "slow",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: {
          load: (id: number) => Effect.as(Effect.sleep("1 hour"), Option.some(`v${id}`)),
          loadMany: (ids: ReadonlyArray<number>) =>
            Effect.as(Effect.sleep("1 hour"), ids.map((id) => [id, Option.some(`v${id}`)] as const))
        },
        ttl: "1 minute",
        lookupTimeout: { hard: "100 millis" },
        logKeys: true
      })
      const one = yield* Effect.fork(Effect.flip(cache.get(1)))
      const many = yield* Effect.fork(Effect.flip(cache.getMany([2, 3])))
      yield* TestClock.adjust("100 millis")
      const [oneError, manyError] = [yield* Fiber.join(one), yield* Fiber.join(many)]
      assert.strictEqual(oneError._tag, "LookupTimeout")
      assert.strictEqual(manyError._tag, "LookupTimeout")
      assert.strictEqual(oneError.key, "1")
      assert.strictEqual(manyError.key, "2 keys")
    }).pipe(Effect.provide(Services)))
})
