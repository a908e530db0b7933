import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Request from "effect/Request"
import * as RequestResolver from "effect/RequestResolver"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import * as TestServices from "effect/TestServices"
import { CacheAside, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"

const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)

class UserSource extends DataSource.Tag("test/UserSource")<UserSource, number, string>() {}

interface GetUser extends Request.Request<Option.Option<string>, "DbDown"> {
  readonly _tag: "GetUser"
  readonly id: number
}
const GetUser = Request.tagged<GetUser>("GetUser")

/** A batched resolver over `rows` that records every batch it received (answers in reverse order). */
const countingResolver = (rows: ReadonlyMap<number, string>) => {
  const batches: Array<ReadonlyArray<number>> = []
  const resolver = RequestResolver.makeBatched((requests: Array<GetUser>) =>
    Effect.forEach(
      [...requests].reverse(),
      (request) => Request.succeed(request, Option.fromNullable(rows.get(request.id))),
      { discard: true }
    ).pipe(Effect.zipLeft(Effect.sync(() => batches.push(requests.map((request) => request.id)))))
  )
  return { batches, resolver }
}

const cacheOver = (source: DataSource.DataSource<number, string, unknown>) =>
  CacheAside.make({
    namespace: "ds",
    key: (id: number) => String(id),
    schema: Schema.String,
    lookup: source,
    ttl: "1 minute"
  })

describe("DataSource", () => {
  it.effect("as a service: the cache reads whichever data source the layer provides", () =>
    Effect.gen(function*() {
      const db = yield* DataSource.memory<number, string>([[1, "from memory"]])
      const program = Effect.gen(function*() {
        const cache = yield* cacheOver(yield* UserSource)
        return yield* cache.get(1)
      })
      assertSome(yield* program.pipe(Effect.provide(Layer.succeed(UserSource, db))), "from memory")
      const other = DataSource.make((id: number) => Effect.succeed(Option.some(`live ${id}`)))
      assertSome(yield* program.pipe(Effect.provide(Layer.succeed(UserSource, other))), "from memory")
      assert.strictEqual(yield* db.loads, 1, "the second cache found the first's entry: same namespace, same store")
    }).pipe(Effect.scoped, Effect.provide(Services)))

  it.effect("fromRequestResolver: loadMany is one request batch, answers matched by request", () =>
    Effect.gen(function*() {
      const { batches, resolver } = countingResolver(new Map([[1, "Ada"], [3, "Grace"]]))
      const source = DataSource.fromRequestResolver(resolver, (id: number) => GetUser({ id }))
      const answers = [...(yield* source.loadMany!([1, 2, 3]))]
      deepStrictEqual(batches, [[1, 2, 3]])
      deepStrictEqual(answers, [[1, Option.some("Ada")], [2, Option.none()], [3, Option.some("Grace")]])
      assertSome(yield* source.load(3), "Grace")
      assert.strictEqual(batches.length, 2)
    }))

  it.effect("batched: N concurrent gets of distinct missing keys from different fibers reach the data source as one loadMany", () =>
    Effect.gen(function*() {
      const n = 50
      const db = yield* DataSource.memory<number, string>(Array.from({ length: n }, (_, i) => [i, `v${i}`] as const))
      const cache = yield* cacheOver(yield* DataSource.batched(db))
      const fibers = yield* Effect.forEach(Array.from({ length: n }, (_, i) => i), (i) => Effect.fork(cache.get(i)))
      const answers = yield* Effect.forEach(fibers, Fiber.join)
      answers.forEach((answer, i) => assertSome(answer, `v${i}`))
      assert.strictEqual(yield* db.calls, 1, "one loadMany for all fifty keys")
      assert.strictEqual(yield* db.loads, n)
      // hits now: no new batch
      yield* Effect.forEach(fibers, (_, i) => cache.get(i), { concurrency: "unbounded" })
      assert.strictEqual(yield* db.calls, 1)
    }).pipe(Effect.scoped, Effect.provide(Services)))

  it.effect("batched over a request resolver: concurrent gets are one resolver batch", () =>
    Effect.gen(function*() {
      const { batches, resolver } = countingResolver(new Map([[1, "Ada"], [2, "Grace"], [4, "Alan"]]))
      const cache = yield* cacheOver(
        yield* DataSource.batched(DataSource.fromRequestResolver(resolver, (id: number) => GetUser({ id })))
      )
      const answers = yield* Effect.all([cache.get(1), cache.get(2), cache.get(3), cache.get(4)], {
        concurrency: "unbounded"
      })
      deepStrictEqual(answers, [Option.some("Ada"), Option.some("Grace"), Option.none(), Option.some("Alan")])
      assert.strictEqual(batches.length, 1)
      deepStrictEqual([...batches[0]!].sort(), [1, 2, 3, 4])
    }).pipe(Effect.scoped, Effect.provide(Services)))

  it.effect("batched: a key the batch left out loads on its own; a failed batch fails each waiter", () =>
    Effect.gen(function*() {
      let single = 0
      let failNext = false
      const partial = DataSource.make(
        (id: number) => Effect.sync(() => ++single).pipe(Effect.as(Option.some(`alone ${id}`))),
        (ids) =>
          failNext
            ? Effect.fail("DbDown" as const)
            : Effect.succeed(ids.filter((id) => id % 2 === 0).map((id) => [id, Option.some(`batch ${id}`)] as const))
      )
      const source = yield* DataSource.batched(partial)
      const answers = yield* Effect.all([1, 2, 3, 4].map(source.load), { concurrency: "unbounded" })
      deepStrictEqual(answers, [
        Option.some("alone 1"),
        Option.some("batch 2"),
        Option.some("alone 3"),
        Option.some("batch 4")
      ])
      assert.strictEqual(single, 2)
      failNext = true
      const failed = yield* Effect.all([source.load(5), source.load(6)].map(Effect.exit), { concurrency: "unbounded" })
      failed.forEach((exit) => deepStrictEqual(exit, Exit.fail("DbDown")))
    }).pipe(Effect.scoped))

  it.effect("batched over a source whose functions throw instead of returning effects: each waiter dies with it, none hangs", () =>
    Effect.gen(function*() {
      const boom = new Error("boom")
      const throwing: DataSource.DataSource<number, string> = {
        load: () => {
          throw boom
        },
        loadMany: (ids) => {
          if (ids.includes(1)) throw boom
          return Effect.succeed([]) // every key left out: each loads alone, through the throwing load
        }
      }
      const source = yield* DataSource.batched(throwing)
      for (const keys of [[1, 2], [3, 4]]) {
        const exits = yield* Effect.all(keys.map((key) => Effect.exit(source.load(key))), {
          concurrency: "unbounded"
        }).pipe(Effect.timeoutFail({ duration: "1 second", onTimeout: () => "a waiter hangs" }))
        exits.forEach((exit) => deepStrictEqual(exit, Exit.die(boom)))
      }
      // and straight through loadMany
      deepStrictEqual(yield* Effect.exit(source.loadMany!([1])), Exit.die(boom))
    }).pipe(Effect.scoped, TestServices.provideLive))

  it.effect("batched with a window waits on the Clock; duplicate keys are asked once", () =>
    Effect.gen(function*() {
      const db = yield* DataSource.memory<number, string>([[7, "seven"]])
      const source = yield* DataSource.batched(db, { window: "10 millis" })
      const fiber = yield* Effect.fork(Effect.all([source.load(7), source.load(7), source.load(8)], {
        concurrency: "unbounded"
      }))
      yield* TestClock.adjust("9 millis")
      assert.strictEqual(yield* db.calls, 0, "the window is still open")
      yield* TestClock.adjust("1 millis")
      const [a, b, c] = yield* Fiber.join(fiber)
      assertSome(a, "seven")
      assertSome(b, "seven")
      assertNone(c)
      assert.strictEqual(yield* db.calls, 1)
      assert.strictEqual(yield* db.loads, 2, "7 and 8, each once")
    }).pipe(Effect.scoped))

  it.effect("batched: closing the scope interrupts the waiters of a batch not yet sent", () =>
    Effect.gen(function*() {
      const db = yield* DataSource.memory<number, string>([[1, "one"]])
      const { fiber } = yield* Effect.gen(function*() {
        const source = yield* DataSource.batched(db, { window: "1 second" })
        const fiber = yield* Effect.fork(source.load(1))
        yield* Effect.yieldNow()
        return { fiber }
      }).pipe(Effect.scoped)
      const exit = yield* Fiber.await(fiber)
      assert.isTrue(Exit.isInterrupted(exit))
      assert.strictEqual(yield* db.calls, 0)
    }))
})
