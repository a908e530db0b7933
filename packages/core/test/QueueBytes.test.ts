/**
 * The invalidation queue of `ResilientCacheStore` is bounded by the memory its entries hold, not
 * only by their count (keys up to 1 MB are accepted: 10,000 of them held about 10 GB during an
 * outage). Counted in estimated bytes (`entryBytes`), exposed as `queueBytes` and the
 * `cache_aside_invalidation_queue_bytes` gauge; reaching the bound is an overflow as reaching the
 * count is (collapse into the overflow pattern, or drop the oldest, counted and logged).
 */
import { assert, describe, it } from "@effect/vitest"
import { assertNone, assertSome, assertTrue, deepStrictEqual } from "@effect/vitest/utils"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Logger from "effect/Logger"
import * as Metric from "effect/Metric"
import * as MetricState from "effect/MetricState"
import * as Option from "effect/Option"
import * as TestClock from "effect/TestClock"
import { CacheUnavailable, InvalidStoreOptions } from "../src/CacheStore.js"
import { MemoryCacheStore, Metrics, ResilientCacheStore } from "../src/index.js"
import { entryBytes, InvalidationQueue } from "../src/internal/invalidationQueue.js"
import type { Invalidation, KeyInvalidation, PatternInvalidation } from "../src/internal/invalidationQueue.js"
import { resilientOverMemory } from "./utils/resilient.js"

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const ttl = Duration.hours(1)
const MiB = 1024 * 1024
const error = new CacheUnavailable({ operation: "delete", cause: new Error("connection refused") })
const key = (k: string): KeyInvalidation => ({ _tag: "Key", id: `k:${k}`, key: k })
/** A distinct key of `size` characters. */
const longKey = (i: number, size: number) => `cache:q:${i}:`.padEnd(size, "k")

/** The queue as a unit, with the recorder's last figures. */
const unit = (
  options: { readonly maxQueued?: number; readonly maxBytes?: number; readonly overflowPattern?: string }
) => {
  const counts = new Map<string, number>()
  const last = { size: 0, bytes: 0 }
  const logs: Array<string> = []
  const capture = Logger.make(({ logLevel, message }) => {
    logs.push(`${logLevel.label} ${(Array.isArray(message) ? message : [message]).join(" ")}`)
  })
  const queue = new InvalidationQueue({
    maxQueued: options.maxQueued ?? 1_000_000,
    maxBytes: options.maxBytes,
    overflowPattern: options.overflowPattern,
    recorder: {
      increment: (event, by = 1) => counts.set(event, (counts.get(event) ?? 0) + by),
      setBreaker: () => {},
      setQueueSize: (size) => {
        last.size = size
      },
      setQueueBytes: (bytes) => {
        last.bytes = bytes
      }
    },
    log: (effect) => Effect.provide(effect, Logger.replace(Logger.defaultLogger, capture))
  })
  const enqueue = (...entries: ReadonlyArray<Invalidation>) => queue.enqueue(entries, error)
  /** Estimated bytes of every entry `order` holds, live or removed: what the queue keeps alive. */
  const retained = () =>
    (queue as unknown as { readonly order: ReadonlyArray<Invalidation> }).order.reduce(
      (sum, entry) => sum + entryBytes(entry),
      0
    )
  return { queue, last, logs, enqueue, retained, count: (event: string) => counts.get(event) ?? 0 }
}

/** The value of the bytes gauge of one store in Effect's registry. */
const gaugeBytes = (store: string) =>
  Effect.map(Metric.snapshot, (pairs) => {
    const pair = pairs.find((p) =>
      p.metricKey.name === "cache_aside_invalidation_queue_bytes" &&
      p.metricKey.tags.some((tag) => tag.key === "store" && tag.value === store)
    )
    return pair !== undefined && MetricState.isGaugeState(pair.metricState) ? Number(pair.metricState.value) : -1
  })

describe("invalidation queue: bounded by bytes", () => {
  it.effect("the default bound is 16 MiB: 200 keys of 256 KiB held at most that, the oldest dropped and counted", () =>
    Effect.gen(function*() {
      const { count, enqueue, last, logs, queue } = unit({})
      let most = 0
      for (let i = 0; i < 200; i++) {
        yield* enqueue(key(longKey(i, 256 * 1024)))
        most = Math.max(most, queue.bytes)
        assert.strictEqual(last.bytes, queue.bytes, "the recorder has the current bytes")
      }
      assertTrue(most <= 16 * MiB, `held ${most} bytes`)
      // 256 KiB keys, held as the key and its id at two bytes a character: about 1 MiB an entry
      assert.strictEqual(queue.size, 15)
      assert.strictEqual(count("queueOverflows"), 185)
      assert.strictEqual(logs.filter((line) => line.startsWith("ERROR")).length, 1)
      assert.match(logs.find((line) => line.startsWith("ERROR"))!, /queue full \(16777216 bytes\); dropping the oldest/)
      // the newest are kept
      assert.strictEqual((queue.head(100) as ReadonlyArray<KeyInvalidation>)[0]!.key, longKey(185, 256 * 1024))
    }))

  it.effect("with an overflow pattern, reaching the bytes collapses the queue into it (a key alone past the bound too)", () =>
    Effect.gen(function*() {
      const { count, enqueue, logs, queue } = unit({ maxBytes: 64 * 1024, overflowPattern: "cache:*" })
      yield* enqueue(key("cache:a"), key("cache:b"))
      yield* enqueue(key(longKey(1, 64 * 1024)))
      assert.strictEqual(queue.size, 1)
      assert.strictEqual((queue.head(10) as PatternInvalidation).pattern, "cache:*")
      assertTrue(queue.bytes <= 64 * 1024)
      assert.strictEqual(count("queueOverflows"), 2)
      assert.match(logs.find((line) => line.startsWith("ERROR"))!, /queue full \(65536 bytes\); replaced by one delete/)
      // alone past the bound: replaced (counted), never silently gone
      const single = unit({ maxBytes: 1024, overflowPattern: "cache:*" })
      yield* single.enqueue(key(longKey(2, 4096)))
      assert.strictEqual((single.queue.head(10) as PatternInvalidation).pattern, "cache:*")
      assert.strictEqual(single.count("queueOverflows"), 1)
    }))

  it.effect("keys remembered as cleared count in the bytes, and are forgotten before an invalidation is dropped", () =>
    Effect.gen(function*() {
      const maxBytes = 256 * 1024
      const { count, enqueue, queue } = unit({ maxBytes })
      yield* enqueue(queue.makePattern("user:*"))
      const keys = Array.from({ length: 400 }, (_, i) => `user:${i}:`.padEnd(1024, "x"))
      for (const k of keys) yield* queue.settle(queue.claim([k])!)
      assertTrue(queue.bytes <= maxBytes, `held ${queue.bytes}`)
      const remembered = keys.filter((k) => queue.claim([k]) === undefined).length
      assertTrue(remembered > 0 && remembered < 400, `${remembered} remembered`)
      // an invalidation that needs the room: the remembered keys go, nothing is dropped
      yield* enqueue(key("other:".padEnd(32 * 1024, "o")))
      assert.strictEqual(queue.size, 2)
      assert.strictEqual(count("queueOverflows"), 0)
      assertTrue(queue.bytes <= maxBytes)
      deepStrictEqual(queue.claim([keys[0]!])?.keys, [keys[0]!], "reads delete it again")
    }))

  it.effect("removed entries do not outlive the bound: a long key queued again and again", () =>
    Effect.gen(function*() {
      const maxBytes = 1 * MiB
      const { enqueue, queue, retained } = unit({ maxBytes })
      const k = longKey(0, 64 * 1024)
      let most = 0
      for (let i = 0; i < 500; i++) {
        yield* enqueue(key(k)) // a new entry each time: the previous one is removed
        most = Math.max(most, retained())
      }
      assert.strictEqual(queue.size, 1)
      assertTrue(most <= maxBytes * 1.25 + entryBytes(key(k)), `order held ${most} bytes`)
      // and replayed ones
      const drained = unit({ maxBytes })
      let peak = 0
      for (let i = 0; i < 500; i++) {
        yield* drained.enqueue(key(longKey(i, 64 * 1024)))
        yield* drained.queue.applied(drained.queue.head(10) as ReadonlyArray<KeyInvalidation>)
        peak = Math.max(peak, drained.retained())
      }
      assertTrue(peak <= maxBytes * 1.25 + entryBytes(key(k)), `order held ${peak} bytes`)
    }))
})

describe("ResilientCacheStore: the queue's bytes during an outage", () => {
  it.scoped("100 invalidations of 256 KiB keys: the queue stays under its bytes, and no key is read stale after", () =>
    Effect.gen(function*() {
      const maxBytes = 4 * MiB
      const { faults, memory, stats, store } = yield* resilientOverMemory(
        {
          name: "bytes",
          failureThreshold: 1_000_000,
          overflowPattern: "cache:*",
          maxQueuedInvalidationBytes: maxBytes
        },
        { maxBytes: 256 * MiB, maxEntries: 1_000 }
      )
      const keys = Array.from({ length: 100 }, (_, i) => longKey(i, 256 * 1024))
      for (const k of keys) yield* memory.set(k, encoder.encode("old"), ttl)
      yield* faults.failAll()
      let most = 0
      for (const k of keys) {
        yield* store.delete([k]) // fails: queued
        const s = yield* stats
        most = Math.max(most, s.queueBytes)
        assert.strictEqual(yield* gaugeBytes("bytes"), s.queueBytes)
      }
      assertTrue(most > 0 && most <= maxBytes, `held ${most} bytes`)
      assertTrue((yield* stats).queueOverflows > 0)
      yield* faults.heal
      yield* TestClock.adjust("1 second") // a replay round
      const after = yield* stats
      assert.strictEqual(after.queueSize, 0)
      assert.strictEqual(after.queueBytes, 0)
      for (const k of keys) assertNone(yield* store.get(k))
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("without an overflow pattern the oldest are dropped, counted; the newest are applied after", () =>
    Effect.gen(function*() {
      const maxBytes = 2 * MiB
      const { faults, memory, stats, store } = yield* resilientOverMemory(
        { failureThreshold: 1_000_000, maxQueuedInvalidationBytes: maxBytes },
        { maxBytes: 256 * MiB, maxEntries: 1_000 }
      )
      const keys = Array.from({ length: 40 }, (_, i) => longKey(i, 256 * 1024))
      for (const k of keys) yield* memory.set(k, encoder.encode("old"), ttl)
      yield* faults.failAll()
      for (const k of keys) yield* store.delete([k])
      const during = yield* stats
      assertTrue(during.queueBytes <= maxBytes)
      assert.strictEqual(during.queueOverflows, keys.length - during.queueSize)
      yield* faults.heal
      yield* TestClock.adjust("1 second")
      for (const k of keys.slice(keys.length - during.queueSize)) assertNone(yield* store.get(k))
      // what was dropped is what the log and the metric said: served until it expires
      assertSome(Option.map(yield* store.get(keys[0]!), (b) => decoder.decode(b)), "old")
    }).pipe(Effect.provide(Metrics.layer)))

  it.scoped("maxQueuedInvalidationBytes is validated like the other options", () =>
    Effect.gen(function*() {
      const inner = yield* MemoryCacheStore.make()
      for (const bad of [0, -1, 2.5, Number.NaN, "16 MiB"]) {
        const result = yield* Effect.either(
          ResilientCacheStore.make(inner, { maxQueuedInvalidationBytes: bad as number })
        )
        assertTrue(Either.isLeft(result) && result.left instanceof InvalidStoreOptions, String(bad))
        assert.match((result as Either.Left<InvalidStoreOptions, unknown>).left.message, /maxQueuedInvalidationBytes/)
      }
      const typo = yield* Effect.either(
        ResilientCacheStore.make(inner, { maxQueuedInvalidationByte: 1 } as ResilientCacheStore.Options)
      )
      assertTrue(Either.isLeft(typo) && /maxQueuedInvalidationBytes/.test(typo.left.message))
      assertTrue(
        Either.isRight(yield* Effect.either(ResilientCacheStore.make(inner, { maxQueuedInvalidationBytes: 1 })))
      )
    }).pipe(Effect.provide(Metrics.layer)))
})
