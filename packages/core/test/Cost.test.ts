/**
 * What a get costs, counted rather than timed (timings drown in a shared machine's noise): the
 * Effect primitives a get evaluates, in every fiber it runs (its background load included), seen by
 * a `Supervisor` with op supervision, as `bench/src/cost.ts` counts them. The bounds sit a little
 * above today's counts (memory store: hit 12, miss 56; forks: none per hit, one per miss), so a
 * change that adds steps to the read path fails here, and whoever makes it raises the bound on
 * purpose, with the benchmark that justifies it.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as RuntimeFlags from "effect/RuntimeFlags"
import * as RuntimeFlagsPatch from "effect/RuntimeFlagsPatch"
import * as Schema from "effect/Schema"
import * as Supervisor from "effect/Supervisor"
import { CacheAside, CacheService, MemoryCacheStore, Metrics } from "../src/index.js"

class Counter extends Supervisor.AbstractSupervisor<void> {
  ops = 0
  fibers = 0
  get value() {
    return Effect.void
  }
  override onEffect(): void {
    this.ops++
  }
  override onStart(): void {
    this.fibers++
  }
}

const Row = Schema.Struct({ id: Schema.String, score: Schema.Number })
const Services = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)
const gets = 200

/**
 * Ops and forked fibers per get over `gets` sequential gets of `keyOf(round, i)` through `get`,
 * after a warm-up round.
 */
const perGet = (get: (key: string) => Effect.Effect<unknown, unknown>, keyOf: (round: string, i: number) => string) =>
  Effect.gen(function*() {
    const loop = (round: string) => Effect.forEach(Array.from({ length: gets }, (_, i) => keyOf(round, i)), get)
    yield* loop("warm")
    const counter = new Counter()
    yield* loop("counted").pipe(
      Effect.supervised(counter),
      Effect.withRuntimeFlagsPatch(RuntimeFlagsPatch.enable(RuntimeFlags.OpSupervision))
    )
    // the loop's own steps (forEach, one per get) are in the count: a bound, not an exact figure
    return { ops: counter.ops / gets, fibers: counter.fibers / gets }
  })

const lookup = (key: string) => Effect.sync(() => Option.some({ id: key, score: 1 }))

/** Per-get cost of a cache made with `CacheAside.make` in the caller's context. */
const perMadeGet = (keyOf: (round: string, i: number) => string) =>
  Effect.flatMap(
    CacheAside.make({ namespace: "cost", key: (key: string) => key, schema: Row, lookup, ttl: "1 hour" }),
    (cache) => perGet(cache.get, keyOf)
  )

/** The same count for a cache defined with `CacheService.Tag` and used through its layer. */
class Rows extends CacheService.Tag("test/Cost/Rows")<Rows>()({
  namespace: "cost-service",
  key: (key: string) => key,
  schema: Row,
  lookup,
  ttl: "1 hour"
}) {}

const perServiceMiss = Effect.flatMap(Rows, (rows) => perGet(rows.get, (round, i) => `${round}:${i}`))

describe("what a get costs (memory store, counted)", () => {
  it.scoped("a hit evaluates at most 15 Effect primitives and forks no fiber", () =>
    Effect.gen(function*() {
      const cost = yield* perMadeGet(() => "hot")
      assert.isAtMost(cost.ops, 15, `${cost.ops} primitives per hit`)
      assert.strictEqual(cost.fibers, 0)
    }).pipe(Effect.provide(Services)))

  it.scoped("a miss evaluates at most 60 Effect primitives and forks one fiber (its load)", () =>
    Effect.gen(function*() {
      const cost = yield* perMadeGet((round, i) => `${round}:${i}`)
      assert.isAtMost(cost.ops, 60, `${cost.ops} primitives per miss`)
      assert.strictEqual(cost.fibers, 1)
    }).pipe(Effect.provide(Services)))

  it.effect("a miss through a CacheService layer costs the same: its lookup needs no Effect.provide per call", () =>
    Effect.gen(function*() {
      // the layer's make captures the layer's Scope and memo map, which the caller never holds: the
      // load fiber is forked with them instead of providing them to every lookup
      const cost = yield* perServiceMiss
      assert.isAtMost(cost.ops, 60, `${cost.ops} primitives per miss`)
      assert.strictEqual(cost.fibers, 1)
    }).pipe(Effect.provide(Rows.layer.pipe(Layer.provideMerge(Services)))))
})
