/**
 * Reloads over a servable entry (internal/refresh.ts) through `CacheAside.make` on the memory store
 * and the TestClock: stale-while-revalidate once per key and once across processes (the hint lease
 * beside the entry), fail-safe's throttle bounded by `maxStale`, another process's reload, the
 * soft timeout, and the handle's `refresh` (see docs/mutation.md).
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import * as TestClock from "effect/TestClock"
import { CacheAside, CacheStore, Codec, FaultInjection, MemoryCacheStore, Metrics } from "../src/index.js"

const Memory = Layer.provideMerge(MemoryCacheStore.layer(), Metrics.layer)
const Faulty = Layer.provideMerge(FaultInjection.layer(MemoryCacheStore.layer()), Metrics.layer)

/** Yields until `check` holds (a bounded number of times: never a wall-clock assertion). */
const until = (check: () => boolean) =>
  Effect.gen(function*() {
    for (let i = 0; i < 1000; i++) {
      if (check()) return
      yield* Effect.yieldNow()
    }
    assert.fail("the condition never held")
  })

const settle = Effect.gen(function*() {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

/** The refresh hint key beside the entry of user key `1` (keys.ts: the version segment holds NUL). */
const hintOf = (full: string) => full.replace(/:1$/, "\u0000refresh:1")

/**
 * A lookup answering `v<n>` for its n-th call; `fail` makes it fail, `gate` (when set) holds it.
 */
const source = () => {
  const state = { loads: 0, fail: false, gate: undefined as Deferred.Deferred<void> | undefined }
  const lookup = (_id: number) =>
    Effect.gen(function*() {
      const n = ++state.loads
      if (state.gate !== undefined) yield* Deferred.await(state.gate)
      if (state.fail) return yield* Effect.fail("database down" as const)
      return Option.some(`v${n}`)
    })
  return { state, lookup }
}

const base = {
  namespace: "refresh",
  key: (id: number) => String(id),
  schema: Schema.String,
  ttl: "1 minute",
  jitter: 0
} as const

describe("stale-while-revalidate", () => {
  it.scoped("a stale hit is answered at once and refreshed once in the background, under the hint lease beside the entry", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const metrics = yield* Metrics.Metrics
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, staleWhileRevalidate: "1 minute", lookup })
      assertSome(yield* cache.get(1), "v1")
      yield* TestClock.adjust("61 seconds")
      state.gate = yield* Deferred.make<void>()
      assertSome(yield* cache.get(1), "v1")
      yield* until(() => state.loads === 2)
      assertTrue(Option.isSome(yield* store.get(hintOf(cache.keyOf(1))))) // the reload's lease
      const faults = yield* FaultInjection.FaultInjection
      yield* faults.resetCounts
      assertSome(yield* cache.get(1), "v1") // still stale, the refresh still running: not a second one
      yield* settle
      assert.strictEqual(state.loads, 2)
      assert.strictEqual((yield* faults.counts).setIfAbsent, 0) // known in this process: not even tried
      yield* Deferred.succeed(state.gate, undefined)
      yield* settle
      assertNone(yield* store.get(hintOf(cache.keyOf(1)))) // released
      assertSome(yield* cache.get(1), "v2")
      assert.strictEqual(state.loads, 2)
      assert.strictEqual((yield* metrics.snapshot("refresh")).staleServes, 2)
      // stale again later: refreshed again (the key is no longer marked as refreshing)
      state.gate = undefined
      yield* TestClock.adjust("61 seconds")
      assertSome(yield* cache.get(1), "v2")
      yield* until(() => state.loads === 3)
      yield* settle
      assertSome(yield* cache.get(1), "v3")
    }).pipe(Effect.provide(Faulty)))

  it.scoped("two processes serving the same stale entry: one reloads it", () =>
    Effect.gen(function*() {
      const { lookup, state } = source()
      const one = yield* CacheAside.make({ ...base, staleWhileRevalidate: "1 minute", lookup })
      const two = yield* CacheAside.make({ ...base, staleWhileRevalidate: "1 minute", lookup })
      assertSome(yield* one.get(1), "v1")
      yield* TestClock.adjust("61 seconds")
      state.gate = yield* Deferred.make<void>()
      assertSome(yield* one.get(1), "v1")
      yield* until(() => state.loads === 2)
      assertSome(yield* two.get(1), "v1")
      yield* settle
      assert.strictEqual(state.loads, 2)
      yield* Deferred.succeed(state.gate, undefined)
      yield* settle
      assertSome(yield* two.get(1), "v2")
    }).pipe(Effect.provide(Memory)))
})

describe("fail-safe", () => {
  const failSafe = { maxStale: "1 minute", throttle: "10 seconds" } as const

  it.scoped("a failing lookup answers the stale value and keeps it for the throttle, then tries again", () =>
    Effect.gen(function*() {
      const metrics = yield* Metrics.Metrics
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, failSafe, lookup })
      assertSome(yield* cache.get(1), "v1") // t = 0, expires at 60 s, kept until 120 s
      state.fail = true
      yield* TestClock.adjust("61 seconds")
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(state.loads, 2)
      assertSome(yield* cache.get(1), "v1") // throttled: fresh again until 71 s, no load
      yield* TestClock.adjust("9 seconds")
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(state.loads, 2)
      yield* TestClock.adjust("2 seconds") // 72 s: past the throttle, the lookup is tried again
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(state.loads, 3)
      assert.strictEqual((yield* metrics.snapshot("refresh")).staleServes, 2)
    }).pipe(Effect.provide(Memory)))

  it.scoped("the throttle of a first failure near the end of maxStale ends with maxStale", () =>
    Effect.gen(function*() {
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, failSafe, lookup })
      assertSome(yield* cache.get(1), "v1") // t = 0, expires at 60 s, kept until 120 s
      state.fail = true
      yield* TestClock.adjust("115 seconds") // 5 s of maxStale left, so the throttle is 5 s
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(state.loads, 2)
      yield* TestClock.adjust("4 seconds") // 119 s: still throttled
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(state.loads, 2)
      yield* TestClock.adjust("2 seconds") // 121 s: past maxStale, nothing to serve
      assertTrue(Exit.isFailure(yield* Effect.exit(cache.get(1))))
      assert.strictEqual(state.loads, 3)
    }).pipe(Effect.provide(Memory)))

  it.scoped("while another process holds the reload's hint lease, the stale value is answered without a load", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, failSafe, lookup })
      assertSome(yield* cache.get(1), "v1")
      yield* TestClock.adjust("61 seconds")
      yield* store.set(hintOf(cache.keyOf(1)), Codec.lease("another process"), Duration.minutes(1))
      assertSome(yield* cache.get(1), "v1")
      assert.strictEqual(state.loads, 1)
    }).pipe(Effect.provide(Memory)))

  it.scoped("a successful reload over a stale entry replaces it", () =>
    Effect.gen(function*() {
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, failSafe, lookup })
      assertSome(yield* cache.get(1), "v1")
      yield* TestClock.adjust("61 seconds")
      assertSome(yield* cache.get(1), "v2")
      assertSome(yield* cache.get(1), "v2")
      assert.strictEqual(state.loads, 2)
    }).pipe(Effect.provide(Memory)))

  it.scoped("the soft timeout answers the stale value; the load goes on, is joined, and fills the cache", () =>
    Effect.gen(function*() {
      const metrics = yield* Metrics.Metrics
      const loads = { count: 0 }
      const cache = yield* CacheAside.make({
        ...base,
        failSafe,
        lookupTimeout: { soft: "100 millis" },
        lookup: () =>
          Effect.suspend(() => {
            const n = ++loads.count
            return n === 1
              ? Effect.succeed(Option.some("v1"))
              : Effect.as(Effect.sleep("1 second"), Option.some(`v${n}`))
          })
      })
      assertSome(yield* cache.get(1), "v1")
      yield* TestClock.adjust("61 seconds")
      const first = yield* Effect.fork(cache.get(1))
      yield* until(() => loads.count === 2)
      yield* TestClock.adjust("100 millis")
      assertSome(yield* Fiber.join(first), "v1")
      assert.strictEqual((yield* metrics.snapshot("refresh")).lookupTimeouts, 1)
      const second = yield* Effect.fork(cache.get(1))
      yield* settle
      assert.strictEqual(loads.count, 2) // joined the running load
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(second)
      assertSome(yield* cache.get(1), "v2")
      assert.strictEqual(loads.count, 2)
    }).pipe(Effect.provide(Memory)))
})

describe("fail-safe: what is logged", () => {
  const failSafe = { maxStale: "1 minute", throttle: "10 seconds" } as const
  const capture = (lines: Array<string>) =>
    Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ annotations, logLevel, message }) => {
        const text = (Array.isArray(message) ? message : [message]).join(" ")
        const annotated = [...HashMap.entries(annotations)].map(([k, v]) => `${k}=${String(v)}`).sort().join(",")
        lines.push(`${logLevel.label} ${text} [${annotated}]`)
      })
    )

  it.scoped("each stale answer says why, with the namespace and the key", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const lines: Array<string> = []
      const loads = { count: 0, mode: "fail" as "fail" | "hard" | "slow" }
      const cache = yield* CacheAside.make({
        ...base,
        failSafe,
        lookupTimeout: { soft: "100 millis", hard: "1 second" },
        lookup: () =>
          Effect.suspend(() => {
            if (++loads.count === 1) return Effect.succeed(Option.some("v1"))
            if (loads.mode === "fail") return Effect.fail("database down" as const)
            return Effect.as(Effect.sleep(loads.mode === "hard" ? "2 seconds" : "500 millis"), Option.some("late"))
          })
      })
      const full = cache.keyOf(1)
      const get = Effect.provide(cache.get(1), capture(lines))
      assertSome(yield* get, "v1")
      yield* TestClock.adjust("61 seconds")
      assertSome(yield* get, "v1") // the lookup failed
      yield* store.delete([hintOf(full)])
      yield* TestClock.adjust("11 seconds")
      loads.mode = "hard"
      const hard = yield* Effect.fork(get)
      yield* until(() => loads.count === 3)
      yield* TestClock.adjust("100 millis") // the soft timeout answers ...
      assertSome(yield* Fiber.join(hard), "v1")
      yield* TestClock.adjust("1 second") // ... and the load passes its hard timeout in the background
      yield* settle
      yield* store.set(hintOf(full), Codec.lease("another process"), Duration.minutes(1))
      yield* TestClock.adjust("11 seconds")
      assertSome(yield* get, "v1") // another process reloads it
      const stale = lines.filter((line) => line.includes("fail-safe"))
      // the key is logged as a hash, never as the key itself
      for (const line of stale) assert.notInclude(line, full)
      const tag = "[key=#hash,namespace=refresh]"
      const reasons = stale.map((line) => line.replace(/key=#[0-9a-f]{12}/, "key=#hash"))
      deepStrictEqual(reasons, [
        `WARN cache-aside: fail-safe, serving a stale value (the lookup failed) ${tag}`,
        `WARN cache-aside: fail-safe, serving a stale value (the lookup passed its soft timeout of 100ms) ${tag}`,
        `WARN cache-aside: fail-safe, serving a stale value (the lookup passed its hard timeout) ${tag}`,
        `WARN cache-aside: fail-safe, serving a stale value (another process is reloading it) ${tag}`
      ])
    }).pipe(Effect.provide(Memory)))
})

describe("the handle's refresh", () => {
  it.scoped("reloads a cached key and writes over it; fills an absent key; takes over corrupt bytes", () =>
    Effect.gen(function*() {
      const store = yield* CacheStore.CacheStore
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, lookup })
      assertSome(yield* cache.get(1), "v1")
      yield* cache.refresh(1)
      assertSome(yield* cache.get(1), "v2")
      yield* cache.invalidate(1)
      yield* cache.refresh(1)
      assert.strictEqual(state.loads, 3)
      assertSome(yield* cache.get(1), "v3")
      yield* store.set(cache.keyOf(1), new Uint8Array([0xff, 0, 1]), Duration.minutes(1))
      yield* cache.refresh(1)
      assertSome(yield* cache.get(1), "v4")
      assert.strictEqual(state.loads, 4)
      // another loader's lease: reloaded and filled over it
      yield* store.set(cache.keyOf(1), Codec.lease("another process"), Duration.minutes(1))
      yield* cache.refresh(1)
      assertSome(yield* cache.get(1), "v5")
      // an entry past its TTL still in the store (dead): taken over and filled
      const dead = Either.getOrThrow(
        Codec.make(Schema.String).encode({ _tag: "Value", value: "old", expiresAt: 0, delta: 0 })
      )
      yield* TestClock.adjust("1 second")
      yield* store.set(cache.keyOf(1), dead, Duration.minutes(1))
      yield* cache.refresh(1)
      assertSome(yield* cache.get(1), "v6")
      assert.strictEqual(state.loads, 6)
    }).pipe(Effect.provide(Memory)))

  it.scoped("with the store failing, refresh still runs the lookup (and writes nothing)", () =>
    Effect.gen(function*() {
      const faults = yield* FaultInjection.FaultInjection
      const { lookup, state } = source()
      const cache = yield* CacheAside.make({ ...base, lookup })
      yield* faults.failAll()
      yield* cache.refresh(1)
      assert.strictEqual(state.loads, 1)
      assert.strictEqual((yield* faults.counts).compareAndSet + (yield* faults.counts).setIfAbsent, 0)
    }).pipe(Effect.provide(Faulty)))
})
