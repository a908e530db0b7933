import { assert, describe, it } from "@effect/vitest"
import { assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheService, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

class DbError extends Schema.TaggedError<DbError>()("DbError", {}) {}

class UserSource extends DataSource.Tag("test/CacheService/UserSource")<UserSource, number, User, DbError>() {}

/** A cache whose lookup is the `UserSource` service, read when the layer is built. */
class UserCache extends CacheService.Tag("test/UserCache")<UserCache>()(
  Effect.map(UserSource, (source) => ({
    namespace: "user",
    key: (id: number) => String(id),
    schema: User,
    lookup: source,
    ttl: "1 hour"
  }))
) {}

/** A cache with a hard lookup timeout: its error type includes `LookupTimeout`. */
class SlowCache extends CacheService.Tag("test/SlowCache")<SlowCache>()({
  namespace: "slow",
  key: (id: number) => String(id),
  schema: Schema.String,
  lookup: (id: number) => Effect.as(Effect.sleep("1 minute"), Option.some(`v${id}`)),
  ttl: "1 hour",
  lookupTimeout: { hard: "1 second" }
}) {}

const Store = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

type Equals<X, Y> = (<T>() => T extends X ? 1 : 2) extends (<T>() => T extends Y ? 1 : 2) ? true : false
const typeIs = <_T extends true>() => undefined

describe("CacheService", () => {
  it.effect("infers key, value and error types, LookupTimeout included with a hard timeout", () =>
    Effect.sync(() => {
      typeIs<Equals<UserCache["Type"], CacheAside.CacheAside<number, User, DbError>>>()
      typeIs<Equals<SlowCache["Type"], CacheAside.CacheAside<number, string, CacheAside.LookupTimeout>>>()
      typeIs<Equals<Layer.Layer.Error<typeof UserCache.layer>, CacheAside.InvalidOptions>>()
      typeIs<Equals<Layer.Layer.Context<typeof UserCache.layer>, CacheService.Requirements | UserSource>>()
      assert.strictEqual(UserCache.key, "test/UserCache")
    }))

  it.effect("the layer builds the cache once; the data source swaps by Layer", () =>
    Effect.gen(function*() {
      const db = yield* DataSource.memory<number, User>([[1, new User({ id: 1, name: "Ada" })]])
      const program = Effect.gen(function*() {
        const first = yield* UserCache
        const again = yield* UserCache
        assert.strictEqual(first, again, "one cache per layer")
        assertSome(yield* first.get(1), new User({ id: 1, name: "Ada" }))
        assertSome(yield* again.get(1), new User({ id: 1, name: "Ada" }))
      })
      yield* program.pipe(
        Effect.provide(UserCache.layer.pipe(Layer.provide(Layer.succeed(UserSource, db)), Layer.provide(Store)))
      )
      assert.strictEqual(yield* db.loads, 1)
    }))

  it.effect("a hard lookup timeout fails the get with LookupTimeout", () =>
    Effect.gen(function*() {
      const cache = yield* SlowCache
      const fiber = yield* Effect.fork(cache.get(1))
      yield* TestClock.adjust("1 second")
      const exit = yield* fiber.await
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.isTrue(String(exit.cause).includes("LookupTimeout"))
    }).pipe(Effect.provide(SlowCache.layer.pipe(Layer.provide(Store)))))

  it.effect("invalid options fail the layer with InvalidOptions", () =>
    Effect.gen(function*() {
      class Bad extends CacheService.Tag("test/Bad")<Bad>()({
        namespace: "a:b",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: () => Effect.succeed(Option.none()),
        ttl: "1 hour"
      }) {}
      const exit = yield* Effect.exit(Layer.build(Bad.layer).pipe(Effect.scoped, Effect.provide(Store)))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) assert.isTrue(String(exit.cause).includes("InvalidOptions"))
    }))

  it.effect("resolver: the gets of one request batch are one getMany", () =>
    Effect.gen(function*() {
      const db = yield* DataSource.memory<number, User>([
        [1, new User({ id: 1, name: "Ada" })],
        [2, new User({ id: 2, name: "Grace" })]
      ])
      yield* Effect.gen(function*() {
        const { get } = CacheService.resolver(yield* UserCache)
        const answers = yield* Effect.all([get(2), get(3), get(1)], { batching: true })
        deepStrictEqual(answers, [
          Option.some(new User({ id: 2, name: "Grace" })),
          Option.none(),
          Option.some(new User({ id: 1, name: "Ada" }))
        ])
        assert.strictEqual(yield* db.calls, 1, "one batch lookup (loadMany) for the three misses")
        const snapshot = yield* (yield* Metrics.Metrics).snapshot("user")
        assert.strictEqual(snapshot.misses, 3)
      }).pipe(
        Effect.provide(UserCache.layer.pipe(Layer.provide(Layer.succeed(UserSource, db)), Layer.provideMerge(Store)))
      )
    }))
})
