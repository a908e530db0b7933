/**
 * The invalidation queue of the resilient store (internal/invalidationQueue.ts) as a pure unit:
 * order and deduplication past the compaction thresholds (1024 entries), patterns, the overflow
 * states, the cap on keys remembered as cleared, and the counts and log lines of an episode (see
 * docs/mutation.md).
 */
import { assert, describe, it } from "@effect/vitest"
import { deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Logger from "effect/Logger"
import { CacheUnavailable } from "../src/CacheStore.js"
import type { Invalidation, KeyInvalidation, PatternInvalidation } from "../src/internal/invalidationQueue.js"
import { InvalidationQueue } from "../src/internal/invalidationQueue.js"
import type { StoreEvent } from "../src/Metrics.js"

const error = new CacheUnavailable({ operation: "delete", cause: new Error("connection refused") })
const key = (k: string): KeyInvalidation => ({ _tag: "Key", id: `k:${k}`, key: k })

const setup = (options: { readonly maxQueued?: number; readonly overflowPattern?: string } = {}) => {
  const counts = new Map<StoreEvent, number>()
  const sizes: Array<number> = []
  const logs: Array<string> = []
  const capture = Logger.make(({ logLevel, message }) => {
    logs.push(`${logLevel.label} ${(Array.isArray(message) ? message : [message]).join(" ")}`)
  })
  const queue = new InvalidationQueue({
    maxQueued: options.maxQueued ?? 1_000_000,
    overflowPattern: options.overflowPattern,
    recorder: {
      increment: (event, by = 1) => counts.set(event, (counts.get(event) ?? 0) + by),
      setBreaker: () => {},
      setQueueSize: (size) => sizes.push(size)
    },
    log: (effect) => Effect.provide(effect, Logger.replace(Logger.defaultLogger, capture))
  })
  const count = (event: StoreEvent) => counts.get(event) ?? 0
  const enqueue = (...entries: ReadonlyArray<Invalidation>) => queue.enqueue(entries, error)
  /** Replays the whole queue as the store would, answering what it replayed, in order. */
  const drain = (batchSize = 100) =>
    Effect.gen(function*() {
      const replayed: Array<string> = []
      for (let head = queue.head(batchSize); head !== undefined; head = queue.head(batchSize)) {
        const entries: ReadonlyArray<Invalidation> = Array.isArray(head) ? head : [head as PatternInvalidation]
        for (const entry of entries) replayed.push(entry._tag === "Key" ? entry.key : `pattern ${entry.pattern}`)
        yield* queue.applied(entries)
      }
      return replayed
    })
  const orderLength = () => (queue as unknown as { readonly order: ReadonlyArray<unknown> }).order.length
  return { queue, count, sizes, logs, enqueue, drain, orderLength }
}

/**
 * A claim of many keys a single queued pattern covers, listing the pattern once (`claim` lists it
 * once per key, and `settle` walks entries × keys: fine for a batch, not for 100 000 keys).
 */
const claimAll = (queue: InvalidationQueue, keys: ReadonlyArray<string>) => {
  const claim = queue.claim(keys.slice(0, 1))!
  return { keys, entries: claim.entries, patterns: true }
}

const range = (n: number, prefix = "k") => Array.from({ length: n }, (_, i) => `${prefix}${i}`)

describe("invalidation queue: order past the compaction thresholds", () => {
  it.effect("3000 keys queued one by one and drained in batches come back once each, in order", () =>
    Effect.gen(function*() {
      const { count, drain, enqueue, orderLength, queue } = setup()
      const keys = range(3000)
      for (const k of keys) yield* enqueue(key(k))
      assert.strictEqual(queue.size, 3000)
      // drain a first part, then queue more: the head passes 1024 removed entries
      const first: Array<string> = []
      while (first.length < 2900) {
        const head = queue.head(100) as ReadonlyArray<KeyInvalidation>
        first.push(...head.map((entry) => entry.key))
        yield* queue.applied(head)
      }
      assert.strictEqual(queue.size, 100)
      assert.isAtMost(orderLength(), 2 * queue.size + 1025) // the removed head was dropped
      const more = range(500, "m")
      for (const k of more) yield* enqueue(key(k))
      const rest = yield* drain(64)
      deepStrictEqual([...first, ...rest], [...keys, ...more])
      assert.strictEqual(queue.size, 0)
      assert.strictEqual(count("invalidationsQueued"), 3500)
      assert.strictEqual(count("invalidationsReplayed"), 3500)
    }))

  it.effect("a key queued again thousands of times is one entry at its latest position; the order array stays bounded", () =>
    Effect.gen(function*() {
      const { drain, enqueue, orderLength, queue } = setup()
      yield* enqueue(key("a"), key("b"), key("c"))
      for (let i = 0; i < 5000; i++) yield* enqueue(key(i % 2 === 0 ? "b" : "a"))
      assert.strictEqual(queue.size, 3)
      assert.isAtMost(orderLength(), 2 * 3 + 1025)
      deepStrictEqual(yield* drain(), ["c", "b", "a"])
    }))

  it.effect("a compaction while part of the queue is drained keeps every live entry in order", () =>
    Effect.gen(function*() {
      const { drain, enqueue, orderLength, queue } = setup()
      const keys = range(1000)
      for (const k of keys) yield* enqueue(key(k))
      const first: Array<string> = []
      while (first.length < 500) {
        const head = queue.head(100) as ReadonlyArray<KeyInvalidation>
        first.push(...head.map((entry) => entry.key))
        yield* queue.applied(head)
      }
      // the head is at 500 (too few to be dropped by the head's own compaction); re-queueing one
      // key grows the order array past 2 * 501 + 1024 entries, which compacts it from its start
      for (let i = 0; i < 2000; i++) yield* enqueue(key("x"))
      assert.isAtMost(orderLength(), 2 * 501 + 1025)
      assert.strictEqual(queue.size, 501)
      deepStrictEqual([...first, ...(yield* drain())], [...keys, "x"])
    }))

  it.effect("re-queued keys at the head are skipped once the head passes 1024 of them, without losing live ones", () =>
    Effect.gen(function*() {
      const { drain, enqueue, queue } = setup()
      const keys = range(1500)
      for (const k of keys) yield* enqueue(key(k))
      for (const k of keys.slice(0, 1400)) yield* enqueue(key(k)) // moves them to the end
      assert.strictEqual(queue.size, 1500)
      deepStrictEqual(yield* drain(1000), [...keys.slice(1400), ...keys.slice(0, 1400)])
    }))
})

describe("invalidation queue: patterns and batches", () => {
  it.effect("a pattern queued twice is one entry; a batch of keys stops at a pattern", () =>
    Effect.gen(function*() {
      const { count, drain, enqueue, queue } = setup()
      yield* enqueue(key("a"), key("b"), queue.makePattern("user:*"), key("c"), queue.makePattern("user:*"), key("d"))
      assert.strictEqual(queue.size, 5)
      assert.strictEqual(count("invalidationsQueued"), 6)
      const head = queue.head(10) as ReadonlyArray<KeyInvalidation>
      deepStrictEqual(head.map((entry) => entry.key), ["a", "b", "c"]) // the pattern moved past c
      deepStrictEqual(queue.head(1), [head[0]!])
      deepStrictEqual(yield* drain(), ["a", "b", "c", "pattern user:*", "d"])
    }))

  it.effect("claim answers the keys a queued key or pattern covers, and nothing when none does", () =>
    Effect.gen(function*() {
      const { enqueue, queue } = setup()
      assert.isUndefined(queue.claim(["a"]))
      yield* enqueue(key("a"), queue.makePattern("user:*"))
      const claim = queue.claim(["a", "b", "user:1"])!
      deepStrictEqual(claim.keys, ["a", "user:1"])
      assert.isTrue(claim.patterns)
      assert.strictEqual(claim.entries.length, 2)
      const onlyKey = queue.claim(["a"])!
      assert.isFalse(onlyKey.patterns)
      assert.isUndefined(queue.claim(["b", "admin:1"]))
      const onlyPattern = queue.claim(["user:9"])!
      assert.strictEqual(onlyPattern.entries.length, 1)
      assert.strictEqual(onlyPattern.entries[0]!._tag, "Pattern")
    }))

  it.effect("a claim of many keys under one queued pattern lists the pattern once, and settles every key", () =>
    Effect.gen(function*() {
      const { enqueue, queue } = setup()
      yield* enqueue(queue.makePattern("user:*"), key("user:7"))
      const keys = range(20_000, "user:")
      const claim = queue.claim(keys)!
      assert.strictEqual(claim.keys.length, 20_000)
      assert.strictEqual(claim.entries.length, 2, "the pattern and the queued key, once each (not once per key)")
      yield* queue.settle(claim)
      assert.strictEqual(queue.size, 1, "the key entry is done; the pattern stays until it is replayed")
      assert.isUndefined(queue.claim(keys), "every key is cleared for the pattern")
    }))

  it.effect("settle: a claimed key entry is done; a pattern remembers the key as cleared until it is replayed", () =>
    Effect.gen(function*() {
      const { count, enqueue, queue } = setup()
      const pattern = queue.makePattern("user:*")
      yield* enqueue(key("a"), pattern)
      yield* queue.settle(queue.claim(["a", "user:1"])!)
      assert.strictEqual(queue.size, 1)
      assert.strictEqual(count("invalidationsReplayed"), 1)
      assert.isUndefined(queue.claim(["a", "user:1"]))
      deepStrictEqual(queue.claim(["user:2"])?.keys, ["user:2"])
      // a claim settled after its entry was queued again does not remove the newer entry
      yield* enqueue(key("b"))
      const stale = queue.claim(["b"])!
      yield* enqueue(key("b"))
      yield* queue.settle(stale)
      assert.strictEqual(queue.size, 2)
      deepStrictEqual(queue.claim(["b"])?.keys, ["b"])
      // applied entries that were queued again meanwhile stay
      const head = queue.head(10)
      yield* enqueue(queue.makePattern("user:*"))
      yield* queue.applied([head as PatternInvalidation])
      assert.strictEqual(queue.size, 2)
      deepStrictEqual(queue.claim(["user:1"])?.keys, ["user:1"]) // the new pattern has cleared nothing
    }))
})

describe("invalidation queue: no overflow pattern configured", () => {
  it.effect("a queued pattern spelled \"undefined\" is no overflow pattern: a key it matches is still queued", () =>
    Effect.gen(function*() {
      const { enqueue, queue } = setup()
      yield* enqueue(queue.makePattern("undefined"), key("undefined"))
      assert.strictEqual(queue.size, 2)
    }))
})

describe("invalidation queue: the cap on keys remembered as cleared", () => {
  const cap = 100_000

  it.effect("a key queued again under the overflow pattern frees its slot in the cap", () =>
    Effect.gen(function*() {
      const { enqueue, queue } = setup({ maxQueued: 1, overflowPattern: "*" })
      yield* enqueue(key("x0"), key("x1")) // collapses into "*"
      assert.strictEqual(queue.size, 1)
      yield* queue.settle(claimAll(queue, range(cap)))
      assert.isUndefined(queue.claim(["k0"]))
      yield* queue.settle(queue.claim(["over"])!)
      deepStrictEqual(queue.claim(["over"])?.keys, ["over"]) // past the cap: reads delete it again
      yield* enqueue(key("k0")) // covered by "*": not queued, no longer remembered as cleared
      assert.strictEqual(queue.size, 1)
      deepStrictEqual(queue.claim(["k0"])?.keys, ["k0"])
      yield* queue.settle(queue.claim(["over"])!) // the freed slot
      assert.isUndefined(queue.claim(["over"]))
    }))

  it.effect("a replayed pattern frees all its slots", () =>
    Effect.gen(function*() {
      const { enqueue, queue } = setup()
      yield* enqueue(queue.makePattern("a*"))
      yield* queue.settle(claimAll(queue, range(cap, "a")))
      yield* queue.applied([queue.head(1) as PatternInvalidation])
      yield* enqueue(queue.makePattern("b*"))
      yield* queue.settle(queue.claim(["b1"])!)
      assert.isUndefined(queue.claim(["b1"]))
    }))

  it.effect("a pattern queued again frees the slots of the one it replaces", () =>
    Effect.gen(function*() {
      const { enqueue, queue } = setup()
      yield* enqueue(queue.makePattern("a*"))
      yield* queue.settle(claimAll(queue, range(cap, "a")))
      yield* enqueue(queue.makePattern("a*"))
      deepStrictEqual(queue.claim(["a1"])?.keys, ["a1"])
      yield* queue.settle(queue.claim(["a1"])!)
      assert.isUndefined(queue.claim(["a1"]))
    }))
})

describe("invalidation queue: overflow episodes", () => {
  it.effect("without an overflow pattern: the oldest are dropped, counted, logged once, summed up when the queue empties", () =>
    Effect.gen(function*() {
      const { count, drain, enqueue, logs, queue, sizes } = setup({ maxQueued: 3 })
      yield* enqueue(key("a"), key("b"), key("c"), key("d"))
      yield* enqueue(key("e"))
      assert.strictEqual(queue.size, 3)
      assert.strictEqual(count("queueOverflows"), 2)
      assert.strictEqual(sizes.at(-1), 3)
      deepStrictEqual(yield* drain(), ["c", "d", "e"])
      assert.strictEqual(sizes.at(-1), 0)
      assert.strictEqual(logs.length, 3)
      assert.match(logs[0]!, /^WARN .*queued for replay.*connection refused/)
      assert.strictEqual(
        logs[1],
        "ERROR cache-aside: invalidation queue full (3); dropping the oldest invalidations, their keys may be served " +
          "stale until they expire (set overflowPattern to clear the cache instead; logged once per overflow, with the " +
          "count when it ends)"
      )
      assert.match(logs[2]!, /^ERROR .*replayed \(3\); 2 invalidation\(s\) were dropped/)
      // a new episode logs again
      yield* enqueue(key("f"))
      yield* drain()
      assert.strictEqual(logs.length, 5)
      assert.match(logs[3]!, /^WARN /)
      assert.match(logs[4]!, /^INFO .*invalidation queue replayed \(1\)$/)
    }))

  it.effect("with an overflow pattern: everything collapses into it; covered keys are not queued; the summary counts what it replaced", () =>
    Effect.gen(function*() {
      const { count, drain, enqueue, logs, queue } = setup({ maxQueued: 3, overflowPattern: "app:*" })
      yield* enqueue(key("app:a"), key("app:b"), key("app:c"), key("app:d"))
      assert.strictEqual(queue.size, 1)
      assert.strictEqual(count("queueOverflows"), 3)
      yield* enqueue(key("app:e"), key("other"))
      assert.strictEqual(queue.size, 2)
      assert.strictEqual(count("queueOverflows"), 3)
      assert.strictEqual(count("invalidationsQueued"), 5)
      assert.strictEqual(logs.length, 2)
      assert.match(logs[1]!, /^ERROR .*queue full \(3\); replaced by one delete of "app:\*"/)
      deepStrictEqual(yield* drain(), ["pattern app:*", "other"])
      assert.match(logs[2]!, /^ERROR .*replayed \(2\); 3 invalidation\(s\) were replaced by the overflow pattern/)
    }))
})
