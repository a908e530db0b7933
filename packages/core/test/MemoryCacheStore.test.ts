import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as fc from "effect/FastCheck"
import * as Option from "effect/Option"
import { CacheStore, MemoryCacheStore } from "../src/index.js"

const bytes = (size: number, fill = 0x61) => new Uint8Array(size).fill(fill)
const ttl = Duration.hours(1)

/** How many of `keys` the store still holds. */
const held = (store: CacheStore.CacheStore["Type"], keys: ReadonlyArray<string>) =>
  Effect.map(store.getMany(keys), (values) => values.filter(Option.isSome).length)

const failureOf = <A>(exit: Exit.Exit<A, CacheStore.CacheUnavailable>): CacheStore.CacheUnavailable => {
  assertTrue(Exit.isFailure(exit))
  const error = exit.cause._tag === "Fail" ? exit.cause.error : undefined
  assertTrue(error !== undefined)
  return error
}

describe("MemoryCacheStore", () => {
  it.effect("stays within its byte budget, evicting the least recently used entries first", () =>
    Effect.gen(function*() {
      const maxBytes = 64 * 1024
      const store = yield* MemoryCacheStore.make({ maxBytes, maxEntries: 1_000_000 })
      const keys = Array.from({ length: 100 }, (_, i) => `k${i}`)
      yield* Effect.forEach(keys, (key) => store.set(key, bytes(2048), ttl), { discard: true })
      const kept = yield* held(store, keys)
      // each entry is charged its value, its key and an overhead: at most 64 KiB / 2 KiB of them
      assert.isAtMost(kept, Math.floor(maxBytes / 2048))
      assert.isAtLeast(kept, Math.floor(maxBytes / (2048 + 128)))
      // the newest are the ones kept
      assert.strictEqual(yield* held(store, keys.slice(-kept)), kept)
      assertNone(yield* store.get("k0"))
    }))

  it.effect("a read makes an entry recently used: it outlives older unread ones", () =>
    Effect.gen(function*() {
      const store = yield* MemoryCacheStore.make({ maxBytes: 64 * 1024 })
      yield* store.set("hot", bytes(4096), ttl)
      for (let i = 0; i < 100; i++) {
        yield* store.set(`cold${i}`, bytes(4096), ttl)
        assertTrue(Option.isSome(yield* store.get("hot")))
      }
      assertNone(yield* store.get("cold0"))
    }))

  it.effect.prop(
    "evicts exactly what a least-recently-used model evicts, over any mix of writes, reads and deletes",
    [fc.array(fc.tuple(fc.constantFrom("set", "set", "get", "delete"), fc.integer({ min: 0, max: 11 })), {
      maxLength: 300
    })],
    ([operations]) =>
      Effect.gen(function*() {
        const maxEntries = 5
        const store = yield* MemoryCacheStore.make({ maxEntries })
        const model: Array<string> = [] // least recently used first
        const use = (key: string) => {
          const at = model.indexOf(key)
          if (at >= 0) model.splice(at, 1)
          model.push(key)
        }
        for (const [operation, n] of operations) {
          const key = `k${n}`
          if (operation === "set") {
            yield* store.set(key, bytes(8, n), ttl)
            use(key)
            if (model.length > maxEntries) model.shift()
          } else if (operation === "get") {
            const found = yield* store.get(key)
            assert.strictEqual(Option.isSome(found), model.includes(key), `get ${key}`)
            if (model.includes(key)) use(key)
          } else {
            yield* store.delete([key])
            const at = model.indexOf(key)
            if (at >= 0) model.splice(at, 1)
          }
        }
        const all = Array.from({ length: 12 }, (_, i) => `k${i}`)
        const values = yield* store.getMany(all)
        deepStrictEqual(all.filter((_, i) => Option.isSome(values[i]!)), all.filter((k) => model.includes(k)))
      }),
    // 300 runs of up to a few hundred store calls: seconds of CPU, more on a loaded machine
    { timeout: 60_000, fastCheck: { numRuns: 300 } }
  )

  it.effect("an entry larger than an eighth of the budget is refused (replied), and set drops the older value", () =>
    Effect.gen(function*() {
      const store = yield* MemoryCacheStore.make({ maxBytes: 64 * 1024 })
      const big = bytes(8 * 1024)
      yield* store.set("k", bytes(10), ttl)
      const refused = failureOf(yield* Effect.exit(store.set("k", big, ttl)))
      assert.strictEqual(refused.operation, "set")
      assert.isTrue(refused.replied)
      assertNone(yield* store.get("k"))
      assert.isTrue(failureOf(yield* Effect.exit(store.setIfAbsent("n", big, ttl))).replied)
      assertNone(yield* store.get("n"))
      const lease = bytes(40, 0)
      assert.isTrue(yield* store.setIfAbsent("l", lease, ttl))
      assert.isTrue(failureOf(yield* Effect.exit(store.compareAndSet("l", lease, big, ttl))).replied)
      // the lease is still there, for its holder to release
      assert.isTrue(yield* store.compareAndDelete("l", lease))
      // just under the limit is kept
      yield* store.set("fits", bytes(8 * 1024 - 200), ttl)
      assertTrue(Option.isSome(yield* store.get("fits")))
    }))

  it.effect("rejects options that cannot work with InvalidStoreOptions", () =>
    Effect.gen(function*() {
      for (
        const options of [
          { maxEntries: 0 },
          { maxEntries: 1.5 },
          { maxEntries: Number.NaN },
          { maxEntries: Number.POSITIVE_INFINITY },
          { maxBytes: 0 },
          { maxBytes: -1 },
          { maxBytes: 100 },
          { maxBytes: Number.NaN },
          { maxBytes: "banana" as unknown as number },
          // not an object (a JavaScript caller): a TypeError, a defect, before they were checked
          null as unknown as MemoryCacheStore.Options,
          "big" as unknown as MemoryCacheStore.Options
        ]
      ) {
        const error = yield* Effect.flip(MemoryCacheStore.make(options))
        assert.strictEqual(error._tag, "InvalidStoreOptions", JSON.stringify(options))
      }
    }))
})
