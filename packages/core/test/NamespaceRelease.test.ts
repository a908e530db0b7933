/**
 * What the library keeps per namespace goes when the last cache of that namespace closes (an
 * attack made and closed 40,000 namespaces: the `Metrics` service and a module-level tags map kept
 * every one). Reference counted: two caches of one namespace share it until both closed; the
 * 1,024 closed most recently stay readable in `snapshot(namespace)`, older ones are folded into the
 * total. Effect's
 * own registry keeps a series per tagged metric for the life of the process (it has no removal):
 * that part stays, and is documented in the README.
 */
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import * as V8 from "node:v8"
import * as Vm from "node:vm"
import { CacheAside, MemoryCacheStore, Metrics } from "../src/index.js"

V8.setFlagsFromString("--expose-gc")
const gc = Vm.runInNewContext("gc") as () => void

/** How many of the referents are still alive after full collections (WeakRefs clear between jobs). */
const alive = (refs: ReadonlyArray<WeakRef<object>>) =>
  Effect.promise(async () => {
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve) => setTimeout(resolve, 0))
      gc()
    }
    return refs.filter((ref) => ref.deref() !== undefined).length
  })

const cacheOf = (namespace: string) =>
  CacheAside.make({
    namespace,
    key: (k: string) => k,
    schema: Schema.String,
    ttl: "1 minute",
    lookup: (k: string) => Effect.succeed(Option.some(k))
  })

describe("Metrics: a namespace is let go when its last holder closes", () => {
  it.effect("3,000 namespaces held and closed: only the recorders of the last 1,024 are kept; every count stays in the total", () =>
    Effect.gen(function*() {
      const metrics = yield* Metrics.Metrics
      const refs: Array<WeakRef<object>> = []
      for (let i = 0; i < 3_000; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const recorder = yield* Metrics.namespaceRecorder(`tenant-${i}`)
          recorder.increment("hits")
          recorder.observeLoad(1)
          refs.push(new WeakRef(recorder))
        }))
      }
      assert.strictEqual(yield* alive(refs), 1_024)
      assert.strictEqual(refs.findIndex((ref) => ref.deref() !== undefined), 3_000 - 1_024)
      assert.strictEqual((yield* metrics.snapshot()).hits, 3_000)
      assert.strictEqual((yield* metrics.snapshot("tenant-7")).hits, 0, "folded into the total")
      assert.strictEqual((yield* metrics.snapshot("tenant-2999")).hits, 1, "recently closed: still readable")
    }).pipe(Effect.provide(Metrics.layer)))

  // (a guard: the old code kept no recorder here either, only a tags array per namespace in a
  // module-level map, which no test can reach; the attack's heap figure shows it gone)
  it.effect("without a Metrics service no recorder is kept either", () =>
    Effect.gen(function*() {
      const refs: Array<WeakRef<object>> = []
      for (let i = 0; i < 1_000; i++) {
        yield* Effect.scoped(Effect.gen(function*() {
          const recorder = yield* Metrics.namespaceRecorder(`global-${i}`)
          recorder.increment("hits")
          refs.push(new WeakRef(recorder))
        }))
      }
      assert.strictEqual(yield* alive(refs), 0)
    }))

  it.effect("reference counted: two holders share a namespace until both closed; opened again it counts on", () =>
    Effect.gen(function*() {
      const metrics = yield* Metrics.Metrics
      const first = yield* Scope.make()
      const second = yield* Scope.make()
      const a = yield* Scope.extend(Metrics.namespaceRecorder("shared"), first)
      const b = yield* Scope.extend(Metrics.namespaceRecorder("shared"), second)
      assert.strictEqual(a, b)
      a.increment("hits")
      yield* Scope.close(first, Exit.void)
      b.increment("misses")
      const held = yield* metrics.snapshot("shared")
      deepStrictEqual([held.hits, held.misses], [1, 1])
      yield* Scope.close(second, Exit.void)
      b.increment("hits") // a late update of a closed holder still counts
      const closed = yield* metrics.snapshot("shared")
      deepStrictEqual([closed.hits, closed.misses], [2, 1])
      const again = yield* Effect.scoped(Effect.gen(function*() {
        const recorder = yield* Metrics.namespaceRecorder("shared")
        recorder.increment("loads")
        return yield* metrics.snapshot("shared")
      }))
      deepStrictEqual([again.hits, again.misses, again.loads], [2, 1, 1])
      // pushed out of the recently closed by 1,024 others: in the total only; opened again, from zero
      for (let i = 0; i < 1_024; i++) yield* Effect.scoped(Metrics.namespaceRecorder(`other-${i}`))
      assert.strictEqual((yield* metrics.snapshot("shared")).hits, 0)
      b.increment("hits") // a late update of a namespace let go counts in the total
      const total = yield* metrics.snapshot()
      deepStrictEqual([total.hits, total.misses, total.loads], [3, 1, 1])
      const fresh = yield* Effect.scoped(Effect.flatMap(Metrics.namespaceRecorder("shared"), (recorder) => {
        recorder.increment("loads")
        return metrics.snapshot("shared")
      }))
      deepStrictEqual([fresh.hits, fresh.loads], [0, 1])
    }).pipe(Effect.provide(Metrics.layer)))

  it.effect("a recorder asked for without a scope is kept for the service's life", () =>
    Effect.gen(function*() {
      const metrics = yield* Metrics.Metrics
      metrics.recorder("pinned").increment("hits")
      yield* Effect.scoped(Metrics.namespaceRecorder("pinned"))
      assert.strictEqual((yield* metrics.snapshot("pinned")).hits, 1)
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("CacheAside: the last cache of a namespace to close lets it go; the other keeps counting", () =>
    Effect.gen(function*() {
      const metrics = yield* Metrics.Metrics
      const outer = yield* cacheOf("users")
      yield* Effect.scoped(Effect.gen(function*() {
        const inner = yield* cacheOf("users")
        yield* inner.get("a")
        yield* inner.get("a")
      }))
      const shared = yield* metrics.snapshot("users")
      deepStrictEqual([shared.misses, shared.hits], [1, 1], "still held by the outer cache")
      yield* outer.get("a")
      assert.strictEqual((yield* metrics.snapshot("users")).hits, 2)
      // a cache of another namespace, closed: let go, readable while among the recently closed
      yield* Effect.scoped(Effect.flatMap(cacheOf("orders"), (orders) => orders.get("x")))
      assert.strictEqual((yield* metrics.snapshot("orders")).misses, 1)
      for (let i = 0; i < 1_024; i++) yield* Effect.scoped(cacheOf(`other-${i}`))
      assert.strictEqual((yield* metrics.snapshot("orders")).misses, 0)
      assert.strictEqual((yield* metrics.snapshot("users")).hits, 2, "the open one is never let go")
      assert.strictEqual((yield* metrics.snapshot()).misses, 2)
    }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.provide(Metrics.layer)))

  it.effect("Effect's registry keeps the series of a closed namespace (no removal): what the README documents", () =>
    Effect.gen(function*() {
      yield* Effect.scoped(Effect.flatMap(cacheOf("registry-kept"), (cache) => cache.get("a")))
      const series = (yield* Metric.snapshot).filter((pair) =>
        pair.metricKey.tags.some((tag) => tag.key === "namespace" && tag.value === "registry-kept")
      ).map((pair) => pair.metricKey.name).sort()
      // a miss: misses, loads, the load duration (one series per tagged metric updated)
      deepStrictEqual(series, ["cache_aside_load_duration_ms", "cache_aside_loads_total", "cache_aside_misses_total"])
    }).pipe(Effect.provide(MemoryCacheStore.layer()), Effect.scoped))
})
