import { assert, describe, it } from "@effect/vitest"
import { assertLeft, assertNone, assertSome, deepStrictEqual } from "@effect/vitest/utils"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { CacheBus } from "../src/index.js"
import * as NearCache from "../src/internal/nearCache.js"

const counting = () => {
  const counts = { evicted: 0, flushed: 0, bypassed: 0 }
  const events: NearCache.Events = {
    evicted: (n) => (counts.evicted += n),
    flushed: () => counts.flushed++,
    bypassed: () => counts.bypassed++
  }
  return { counts, events }
}

const make = (
  options: Partial<NearCache.Resolved> = {},
  healthy: () => boolean = () => true
) => {
  const { counts, events } = counting()
  const cache = new NearCache.NearCache<string>(
    { maxEntries: options.maxEntries ?? 100, maxBytes: options.maxBytes, ttlMillis: options.ttlMillis ?? 1000 },
    healthy,
    events
  )
  return { cache, counts }
}

describe("near cache (L1)", () => {
  it("an entry lives until the store entry's logical expiry, and never longer than the ttl", () => {
    const { cache } = make({ ttlMillis: 1000 })
    cache.set("a", Option.some("A"), 500, 1, cache.token(), 0) // the store entry expires first
    cache.set("b", Option.some("B"), 10_000, 1, cache.token(), 0) // the near cache's ttl ends first
    assertSome(cache.get("a", 499)!, "A")
    assert.isUndefined(cache.get("a", 500))
    assertSome(cache.get("b", 999)!, "B")
    assert.isUndefined(cache.get("b", 1000))
    cache.set("c", Option.some("C"), 100, 1, cache.token(), 100) // already expired: not kept
    assert.isUndefined(cache.get("c", 100))
  })

  it("a cached \"not found\" is kept as None", () => {
    const { cache } = make()
    cache.set("gone", Option.none(), 500, 1, cache.token(), 0)
    const found = cache.get("gone", 1)
    assert.isDefined(found)
    assertNone(found!)
  })

  it("bounded by entries, least recently used out first", () => {
    const { cache } = make({ maxEntries: 2 })
    cache.set("a", Option.some("A"), 1000, 1, cache.token(), 0)
    cache.set("b", Option.some("B"), 1000, 1, cache.token(), 0)
    cache.get("a", 1) // a is now the most recently used
    cache.set("c", Option.some("C"), 1000, 1, cache.token(), 0)
    assert.strictEqual(cache.size, 2)
    assertSome(cache.get("a", 1)!, "A")
    assert.isUndefined(cache.get("b", 1))
    assertSome(cache.get("c", 1)!, "C")
  })

  it("bounded by approximate bytes; an entry larger than the bound is not kept", () => {
    const { cache } = make({ maxEntries: 100, maxBytes: 100 })
    cache.set("a", Option.some("A"), 1000, 60, cache.token(), 0)
    cache.set("b", Option.some("B"), 1000, 60, cache.token(), 0) // 120 bytes > 100: a goes
    assert.isUndefined(cache.get("a", 1))
    assertSome(cache.get("b", 1)!, "B")
    cache.set("huge", Option.some("H"), 1000, 101, cache.token(), 0)
    assert.isUndefined(cache.get("huge", 1))
    assertSome(cache.get("b", 1)!, "B")
  })

  it("a read that began before an eviction of its key never fills; one that began after does", () => {
    const { cache } = make()
    const before = cache.token()
    cache.evictKeys(["k"])
    cache.set("k", Option.some("old"), 1000, 1, before, 0)
    assert.isUndefined(cache.get("k", 1))
    const after = cache.token()
    cache.set("k", Option.some("new"), 1000, 1, after, 0)
    assertSome(cache.get("k", 1)!, "new")
    // an eviction of another key does not block the fill
    const other = cache.token()
    cache.evictKeys(["x"])
    cache.set("k2", Option.some("v"), 1000, 1, other, 0)
    assertSome(cache.get("k2", 1)!, "v")
  })

  it("pattern and namespace-wide evictions block every read that began before them", () => {
    const { cache, counts } = make()
    cache.set("cache:n:1:user:1", Option.some("u1"), 1000, 1, cache.token(), 0)
    cache.set("cache:n:1:order:1", Option.some("o1"), 1000, 1, cache.token(), 0)
    const before = cache.token()
    cache.apply({ _tag: "Pattern", pattern: "cache:n:1:user:*" })
    assert.isUndefined(cache.get("cache:n:1:user:1", 1))
    assertSome(cache.get("cache:n:1:order:1", 1)!, "o1")
    cache.set("cache:n:1:order:2", Option.some("o2"), 1000, 1, before, 0)
    assert.isUndefined(cache.get("cache:n:1:order:2", 1))
    cache.apply({ _tag: "All" })
    assert.strictEqual(cache.size, 0)
    assert.strictEqual(counts.evicted, 2)
  })

  it("while the bus is unhealthy nothing is answered or kept; a flush empties it and is counted", () => {
    let healthy = true
    const { cache, counts } = make({}, () => healthy)
    cache.set("a", Option.some("A"), 1000, 1, cache.token(), 0)
    const before = cache.token()
    healthy = false
    assert.isUndefined(cache.get("a", 1)) // held, not answered: counted
    assert.isUndefined(cache.get("other", 1)) // not held: not counted
    assert.strictEqual(counts.bypassed, 1)
    cache.flush()
    assert.strictEqual(counts.flushed, 1)
    assert.isUndefined(cache.get("a", 1))
    cache.set("b", Option.some("B"), 1000, 1, cache.token(), 0)
    healthy = true
    assert.isUndefined(cache.get("b", 1))
    cache.set("c", Option.some("C"), 1000, 1, before, 0) // began before the flush
    assert.isUndefined(cache.get("c", 1))
    assert.strictEqual(cache.size, 0)
  })

  it("many evicted keys are forgotten under one floor, still blocking earlier reads", () => {
    const { cache } = make()
    const before = cache.token()
    cache.evictKeys(Array.from({ length: 5000 }, (_, i) => `k${i}`))
    cache.set("k1", Option.some("old"), 1000, 1, before, 0)
    cache.set("unrelated", Option.some("old"), 1000, 1, before, 0)
    assert.isUndefined(cache.get("k1", 1))
    assert.isUndefined(cache.get("unrelated", 1))
  })

  it("a pattern or a key list too large to match entry by entry (a hostile bus message) clears the cache instead", () => {
    const { cache, counts } = make({ maxEntries: 20_000 })
    const fill = () => {
      for (let i = 0; i < 10_000; i++) {
        cache.set(`cache:n:1:user:${i}:${"x".repeat(30)}`, Option.some("v"), 1000, 1, cache.token(), 0)
      }
    }
    fill()
    const started = performance.now()
    // at worst (pattern × key characters) steps per entry: 20,000 × 47 × 10,000 if matched
    cache.apply({ _tag: "Pattern", pattern: "*a".repeat(10_000) + "b" })
    assert.strictEqual(cache.size, 0)
    assert.strictEqual(counts.evicted, 10_000)
    fill()
    cache.apply({ _tag: "Keys", keys: Array.from({ length: 100_000 }, (_, i) => `other:${i}`) })
    assert.strictEqual(cache.size, 0)
    assert.isBelow(performance.now() - started, 2_000, "a bound against matching it entry by entry")
    // a pattern of ordinary length still removes only what it matches
    fill()
    cache.set("cache:n:1:order:1", Option.some("o"), 1000, 1, cache.token(), 0)
    cache.apply({ _tag: "Pattern", pattern: "cache:n:1:user:*" })
    assert.strictEqual(cache.size, 1)
  })

  it("options are validated", () => {
    deepStrictEqual(
      NearCache.resolve({ maxEntries: 10, ttl: "1 second" }),
      Either.right({ maxEntries: 10, maxBytes: undefined, ttlMillis: 1000 })
    )
    assertLeft(
      NearCache.resolve({ maxEntries: 0, ttl: "1 second" }),
      "nearCache.maxEntries must be an integer between 1 and 9007199254740991, got 0"
    )
    assert.isTrue(Either.isLeft(NearCache.resolve({ maxEntries: 1, maxBytes: 0.5, ttl: "1 second" })))
    assert.isTrue(Either.isLeft(NearCache.resolve({ maxEntries: 1, ttl: -1 })))
    assert.isTrue(Either.isLeft(NearCache.resolve({ maxEntries: 1, ttl: 0 })))
  })
})

describe("memory bus", () => {
  it.scoped("instances see each other's messages; an instance's own subscribers get its own once, synchronously; a lost hub flushes every instance", () =>
    Effect.gen(function*() {
      const hub = CacheBus.makeMemoryHub()
      const a = hub.instance()
      const b = hub.instance()
      const seen = { a: [] as Array<CacheBus.Invalidation>, b: [] as Array<CacheBus.Invalidation>, flushes: 0 }
      yield* a.subscribe("cache:n:", { evict: (i) => seen.a.push(i), flush: () => seen.flushes++ })
      yield* b.subscribe("cache:n:", { evict: (i) => seen.b.push(i), flush: () => seen.flushes++ })
      yield* a.publish("cache:n:", { _tag: "Set", key: "cache:n:1:x" })
      yield* a.publish("cache:other:", { _tag: "All" })
      deepStrictEqual(seen.b, [{ _tag: "Set", key: "cache:n:1:x" }])
      deepStrictEqual(seen.a, [{ _tag: "Set", key: "cache:n:1:x" }])
      hub.setHealthy(false)
      assert.isFalse(a.healthy())
      assert.strictEqual(seen.flushes, 2)
      hub.setHealthy(true)
      assert.isTrue(b.healthy())
      assert.strictEqual(seen.flushes, 4)
    }))

  it("messages are decoded as untrusted text", () => {
    const message: CacheBus.Message = {
      sender: "s",
      namespace: "cache:n:",
      invalidation: { _tag: "Keys", keys: ["k"] }
    }
    deepStrictEqual(CacheBus.decodeMessage(CacheBus.encodeMessage(message)), message)
    assert.isUndefined(CacheBus.decodeMessage("{"))
    assert.isUndefined(CacheBus.decodeMessage(JSON.stringify({ ...message, invalidation: { _tag: "Drop" } })))
    assert.isUndefined(
      CacheBus.decodeMessage(JSON.stringify({ ...message, invalidation: { _tag: "Keys", keys: [1] } }))
    )
  })
})

describe("near cache reads (begin / fill)", () => {
  it("a fill keeps the token of the read that began it; a fill no read began is not kept", () => {
    const { cache } = make()
    cache.fill("never-read", Option.some("x"), 1000, 1, 0)
    assert.isUndefined(cache.get("never-read", 1))
    cache.begin("k")
    cache.evictKeys(["k"]) // an invalidation while the read was in flight
    cache.fill("k", Option.some("old"), 1000, 1, 0)
    assert.isUndefined(cache.get("k", 1))
    cache.begin("k")
    cache.fill("k", Option.some("new"), 1000, 1, 0)
    assertSome(cache.get("k", 1)!, "new")
  })
})
