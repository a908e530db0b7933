/**
 * Edges an outside attack found in the public API (2026-12-02), each seen failing before its fix:
 * a key function with an optional parameter through `getMany`, a lookup (or `loadMany`) that answers
 * a plain value instead of an `Option`, and a `ttl` function whose answer cannot be turned into text.
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { CacheAside, DataSource, MemoryCacheStore, Metrics } from "../src/index.js"

const Live = Layer.merge(MemoryCacheStore.layer(), Metrics.layer)

/** The defect's message of a failed exit, or a failure of the test. */
const defectMessage = <A, E>(exit: Exit.Exit<A, E>): string => {
  assert.isTrue(Exit.isFailure(exit), "the get failed")
  const defect = Exit.isFailure(exit) ? Cause.dieOption(exit.cause) : Option.none()
  assert.isTrue(Option.isSome(defect), "with a defect")
  return Option.isSome(defect) && defect.value instanceof Error ? defect.value.message : ""
}

describe("getMany and the key function", () => {
  it.effect("a key function with an optional second parameter gets the key alone: getMany reads what get reads", () =>
    Effect.gen(function*() {
      let loads = 0
      const cache = yield* CacheAside.make({
        namespace: "kf",
        // `map` would pass (key, index, array): the index would become the locale
        key: (id: string, locale: string | number = "en") => `${locale}/${id}`,
        schema: Schema.String,
        lookup: (id: string) => Effect.sync(() => (loads++, Option.some(`loaded ${id}`))),
        ttl: "1 hour"
      })
      yield* cache.set("a", "written")
      deepStrictEqual(yield* cache.getMany(["a"]), [Option.some("written")])
      yield* cache.invalidate("a")
      deepStrictEqual(yield* cache.getMany(["a"]), [Option.some("loaded a")])
      assertSome(yield* cache.get("a"), "loaded a")
      assert.strictEqual(loads, 1, "getMany filled the entry get reads")
    }).pipe(Effect.scoped, Effect.provide(Live)))
})

describe("a lookup that answers something else than an Option", () => {
  it.effect("get: a defect naming the namespace, counted, nothing cached (not a row reported missing)", () =>
    Effect.gen(function*() {
      const answers: Array<unknown> = [{ id: 1 }, null, "row", [1]]
      let next = 0
      const cache = yield* CacheAside.make({
        namespace: "rows",
        key: (id: number) => String(id),
        schema: Schema.Unknown,
        // a JavaScript caller's lookup (or one cast past its type): a plain row, null, ...
        lookup: () => Effect.sync(() => answers[next++] as Option.Option<unknown>),
        ttl: "1 hour"
      })
      const metrics = yield* Metrics.Metrics
      for (const got of ["an object that is not an Option", "null", "string", "an array"]) {
        const message = defectMessage(yield* Effect.exit(cache.get(1)))
        assert.include(message, `namespace "rows"`)
        assert.include(message, `got ${got}`)
      }
      assertNone(yield* cache.getOption(1))
      const snapshot = yield* metrics.snapshot("rows")
      assert.strictEqual(snapshot.loadErrors, 4)
    }).pipe(Effect.scoped, Effect.provide(Live)))

  it.effect("loadMany: the batch fails with the defect; no key is cached as not found", () =>
    Effect.gen(function*() {
      const cache = yield* CacheAside.make({
        namespace: "batch-rows",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: DataSource.make(
          (id: number) => Effect.succeed(Option.some(`row ${id}`)),
          (ids: ReadonlyArray<number>) =>
            Effect.succeed(ids.map((id) => [id, `row ${id}` as unknown as Option.Option<string>] as const))
        ),
        ttl: "1 hour"
      })
      const message = defectMessage(yield* Effect.exit(cache.getMany([1, 2, 3])))
      assert.include(message, `loadMany of namespace "batch-rows"`)
      for (const id of [1, 2, 3]) assertNone(yield* cache.getOption(id))
    }).pipe(Effect.scoped, Effect.provide(Live)))
})

describe("a ttl function whose answer cannot be read", () => {
  it.effect("an answer that throws when turned into text: served, not cached, counted; never a defect", () =>
    Effect.gen(function*() {
      const revoked = Proxy.revocable({}, {})
      revoked.revoke()
      const unreadable: Array<unknown> = [Object.create(null), revoked.proxy, {
        toString: () => {
          throw new Error("no")
        }
      }]
      let next = 0
      const cache = yield* CacheAside.make({
        namespace: "ttl-fn",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)),
        ttl: () => unreadable[next++ % unreadable.length] as number
      })
      const metrics = yield* Metrics.Metrics
      for (const id of [1, 2, 3]) {
        assertSome(yield* cache.get(id), `v${id}`)
        assertNone(yield* cache.getOption(id))
      }
      const snapshot = yield* metrics.snapshot("ttl-fn")
      assert.strictEqual(snapshot.ttlErrors, 3)
    }).pipe(Effect.scoped, Effect.provide(Live)))
})

describe("ttl function answers that Duration would silently turn into zero", () => {
  it.effect("[NaN, 0] and [0, NaN] are invalid (counted in ttlErrors), not the zero they decode to", () =>
    Effect.gen(function*() {
      const answers: Array<unknown> = [[Number.NaN, 0], [0, Number.NaN], 0.3, 0]
      let next = 0
      const cache = yield* CacheAside.make({
        namespace: "ttl-zero",
        key: (id: number) => String(id),
        schema: Schema.String,
        lookup: (id: number) => Effect.succeed(Option.some(`v${id}`)),
        ttl: () => answers[next++] as number
      })
      const metrics = yield* Metrics.Metrics
      for (const id of [1, 2, 3, 4]) {
        assertSome(yield* cache.get(id), `v${id}`)
        assertNone(yield* cache.getOption(id))
      }
      // below 1 ms and zero are the documented "do not cache" answers, not errors
      const snapshot = yield* metrics.snapshot("ttl-zero")
      assert.strictEqual(snapshot.ttlErrors, 2)
    }).pipe(Effect.scoped, Effect.provide(Live)))
})
