/**
 * RedisCacheBus on a real redis-server: messages between instances, writes by a plain client seen
 * through client-side caching, and a lost (killed, paused) subscriber connection flushing.
 * Outcomes are counted; waits are generous bounds against hangs.
 */
import { CacheAside, CacheBus, Metrics } from "@cache-aside/core"
import { RedisCacheBus, RedisClient } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome, assertSuccess, deepStrictEqual } from "@effect/vitest/utils"
import { Context, type Duration, Effect, Exit, Layer, Option, Redacted, Runtime, Schedule, Schema } from "effect"
import { createHash } from "node:crypto"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

const namespace = "cache:nbus:"

/** A subscriber that records what it is told. */
const recorder = () => {
  const evicted: Array<CacheBus.Invalidation> = []
  let flushes = 0
  const subscriber: CacheBus.Subscriber = {
    evict: (invalidation) => evicted.push(invalidation),
    flush: () => flushes++
  }
  return { subscriber, evicted, flushes: () => flushes }
}

/** One process's bus and data client, over its own connections. */
const instance = (server: RedisServer["Type"], heartbeat: Duration.DurationInput = "200 millis") =>
  Effect.gen(function*() {
    const context = yield* Layer.build(
      Layer.merge(RedisCacheBus.layerWithClient({ heartbeat }), Layer.empty).pipe(
        Layer.provideMerge(RedisClient.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }))
      )
    )
    const bus = yield* Effect.provide(CacheBus.CacheBus, context)
    const client = yield* Effect.provide(RedisClient.RedisClient, context)
    return { bus, client }
  })

/** One instance's bus with a recording subscriber on `namespace`, once healthy. */
const subscribedInstance = (server: RedisServer["Type"], heartbeat?: Duration.DurationInput) =>
  Effect.gen(function*() {
    const a = yield* instance(server, heartbeat)
    const seen = recorder()
    yield* a.bus.subscribe(namespace, seen.subscriber)
    yield* eventually("healthy", () => a.bus.healthy())
    return { a, seen }
  })

/** What an application with near caches provides: the store and the bus on one client, and metrics. */
const storeAndBus = (server: RedisServer["Type"], heartbeat?: Duration.DurationInput) =>
  Layer.build(
    RedisCacheBus.layer({
      url: Redacted.make(server.url),
      commandTimeout: "2 seconds",
      bus: heartbeat === undefined ? {} : { heartbeat }
    }).pipe(Layer.provideMerge(Metrics.layer))
  )

/** Waits (polling, at most 5 seconds of real time) until `done()`. */
const eventually = (what: string, done: () => boolean) =>
  Effect.suspend(() => done() ? Effect.void : Effect.fail(what)).pipe(
    Effect.retry(Schedule.intersect(Schedule.spaced("5 millis"), Schedule.recurs(1000))),
    Effect.orDie
  )

describe("RedisCacheBus", () => {
  it.scopedLive("a message reaches the other instance, and its sender's own subscribers once; malformed messages are ignored", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const a = yield* instance(server)
      const b = yield* instance(server)
      const seenA = recorder()
      const seenB = recorder()
      yield* a.bus.subscribe(namespace, seenA.subscriber)
      yield* b.bus.subscribe(namespace, seenB.subscriber)
      yield* eventually("both healthy", () => a.bus.healthy() && b.bus.healthy())
      const raw = yield* plainClient(server)
      yield* Effect.promise(() => raw.publish(`cache-aside-bus:${namespace}`, "{not json"))
      yield* Effect.promise(() => raw.publish(`cache-aside-bus:${namespace}`, JSON.stringify({ sender: "x" })))
      yield* a.bus.publish(namespace, { _tag: "Keys", keys: ["cache:nbus:1:a"] })
      yield* a.bus.publish(namespace, { _tag: "Pattern", pattern: "cache:nbus:1:u*" })
      yield* a.bus.publish("cache:other:", { _tag: "All" })
      yield* eventually("two messages at b", () => seenB.evicted.length >= 2)
      yield* Effect.sleep("100 millis")
      deepStrictEqual(seenB.evicted, [
        { _tag: "Keys", keys: ["cache:nbus:1:a"] },
        { _tag: "Pattern", pattern: "cache:nbus:1:u*" }
      ])
      // the sender's own subscribers got them synchronously, and skipped the copies from Redis
      deepStrictEqual(seenA.evicted, seenB.evicted)
    }))

  it.scopedLive(
    "a write by a plain client to a key this process read evicts it; the process's own writes, scripts included, do not (NOLOOP)",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const a = yield* instance(server)
        const seen = recorder()
        yield* a.bus.subscribe(namespace, seen.subscriber)
        yield* eventually("healthy", () => a.bus.healthy())
        const raw = yield* plainClient(server)
        const own = "cache:nbus:1:own"
        const read = ["cache:nbus:1:k,1", own, "cache:other:1:x"]
        yield* Effect.promise(() => raw.set(own, "v0"))
        // tracked: the keys this process reads (a near cache holds nothing else)
        yield* a.client.mgetBuffer(read)
        // the instance's own writes on its data connection: a plain SET and a compare-and-set script
        yield* a.client.setPx(own, new TextEncoder().encode("v1"), 60_000)
        yield* a.client.mgetBuffer([own])
        const written = yield* a.client.compareAndSetPx(
          own,
          createHash("sha1").update("v1").digest("hex"),
          new TextEncoder().encode("v2"),
          60_000
        )
        assert.isTrue(written)
        yield* Effect.promise(() => raw.set("cache:other:1:x", "v")) // another namespace: not this subscriber's
        yield* Effect.promise(() => raw.set("cache:nbus:1:never-read", "v")) // never read here: not tracked
        yield* Effect.promise(() => raw.set("cache:nbus:1:k,1", "v")) // a comma in the key stays one key
        yield* eventually("eviction", () => seen.evicted.length >= 1)
        // the fill script re-read its key: a later write by another client is still reported
        yield* Effect.promise(() => raw.set(own, "v3"))
        yield* eventually("eviction of the filled key", () => seen.evicted.length >= 2)
        yield* Effect.promise(() => raw.flushdb())
        yield* eventually("flushdb", () => seen.evicted.length >= 3)
        yield* Effect.sleep("100 millis")
        deepStrictEqual(seen.evicted, [
          { _tag: "Keys", keys: ["cache:nbus:1:k,1"] },
          { _tag: "Keys", keys: [own] },
          { _tag: "All" }
        ])
      })
  )

  it.scopedLive("what a fill puts in the near cache stays there: its own compare-and-set does not come back", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      // a long heartbeat: after a stall of this process longer than the heartbeat (a starved CPU),
      // the near cache is rightly bypassed until the subscriber is heard again, which is not what
      // this test counts
      const context = yield* storeAndBus(server, "1 minute")
      let loads = 0
      const cache = yield* CacheAside.make({
        namespace: "echo",
        key: (key: string) => key,
        schema: Schema.String,
        lookup: (key: string) =>
          Effect.sync(() => {
            loads++
            return Option.some(`v-${key}`)
          }),
        ttl: "1 minute",
        nearCache: { maxEntries: 100, ttl: "1 minute" }
      }).pipe(Effect.provide(context))
      const bus = yield* Effect.provide(CacheBus.CacheBus, context)
      const metrics = yield* Effect.provide(Metrics.Metrics, context)
      yield* eventually("healthy", () => bus.healthy())
      const counts = Effect.map(
        metrics.snapshot("echo"),
        (s) => ({
          hits: Number(s.hits),
          near: Number(s.nearHits),
          bypassed: Number(s.nearBypasses),
          evictions: Number(s.nearEvictions)
        })
      )
      const keys = Array.from({ length: 20 }, (_, i) => `k${i}`)
      const pass = Effect.forEach(keys, (key) => Effect.map(cache.get(key), (value) => assertSome(value, `v-${key}`)))
      yield* pass // 20 misses, 20 fills
      yield* Effect.sleep("200 millis") // what would come back has arrived
      const before = yield* counts
      yield* pass
      const after = yield* counts
      assert.strictEqual(loads, keys.length, "no key loaded twice")
      assert.strictEqual(after.hits - before.hits, keys.length)
      // every get after the fill is a near hit: held, and answered, unless this process stalled
      // just then (a loaded machine), when the near cache is bypassed, counted, for that moment
      assert.strictEqual(
        after.near - before.near + (after.bypassed - before.bypassed),
        keys.length,
        "every get after the fill found its key in the near cache"
      )
      assert.strictEqual(after.evictions, 0, "nothing evicted")
      // and a write by another client still evicts a filled key
      const raw = yield* plainClient(server)
      yield* Effect.promise(() => raw.del(cache.keyOf("k3")))
      yield* eventually("the eviction", () => {
        let evicted = 0
        Effect.runSync(Effect.map(counts, (c) => (evicted = c.evictions)))
        return evicted === 1
      })
      assertSome(yield* cache.get("k3"), "v-k3")
      assert.strictEqual(loads, keys.length + 1, "k3 loaded again")
    }))

  it.scopedLive("a killed subscriber connection flushes, and tracking comes back on the new connection", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const a = yield* instance(server)
      const seen = recorder()
      yield* a.bus.subscribe(namespace, seen.subscriber)
      yield* eventually("healthy", () => a.bus.healthy())
      assert.strictEqual(seen.flushes(), 1, "one flush when the bus first became healthy")
      const raw = yield* plainClient(server)
      yield* Effect.promise(() => raw.client("KILL", "TYPE", "pubsub"))
      yield* eventually("a flush on the loss", () => seen.flushes() >= 2)
      yield* eventually("healthy again", () => a.bus.healthy())
      assert.strictEqual(seen.flushes(), 3, "flushed on the loss and on the recovery")
      yield* a.client.mgetBuffer(["cache:nbus:1:after"]) // read (tracked) on the new tracking
      yield* Effect.promise(() => raw.set("cache:nbus:1:after", "v"))
      yield* eventually("eviction after the reconnect", () => seen.evicted.length >= 1)
      deepStrictEqual(seen.evicted, [{ _tag: "Keys", keys: ["cache:nbus:1:after"] }])
    }))

  it.scopedLive("works as a user with only the documented ACL (store's plus the bus's), under a keyPrefix", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const acl = [
        "ACL",
        "SETUSER",
        "cache",
        "on",
        ">secret",
        "resetkeys",
        "~app:*",
        "resetchannels",
        "-@all",
        // the store's (packages/redis/README.md, Minimal ACL)
        ...["+evalsha", "+eval", "+get", "+mget", "+strlen", "+set", "+del", "+unlink", "+scan", "+info"],
        // the bus's (RedisCacheBus module doc)
        ...["+publish", "+subscribe", "+ping", "+client|id", "+client|tracking"],
        "&cache-aside-bus:*",
        "&__redis__:invalidate"
      ]
      assert.strictEqual(yield* server.command(...acl), "+OK")
      const context = yield* Layer.build(
        RedisCacheBus.layerWithClient({ heartbeat: "200 millis" }).pipe(
          Layer.provideMerge(RedisClient.layer({
            url: Redacted.make(server.url),
            username: "cache",
            password: Redacted.make("secret"),
            keyPrefix: "app:",
            commandTimeout: "2 seconds"
          }))
        )
      )
      const bus = yield* Effect.provide(CacheBus.CacheBus, context)
      const client = yield* Effect.provide(RedisClient.RedisClient, context)
      const seen = recorder()
      yield* bus.subscribe(namespace, seen.subscriber)
      yield* eventually("healthy as the restricted user", () => bus.healthy())
      yield* client.mgetBuffer(["cache:nbus:1:k"]) // read as the restricted user: tracked
      const raw = yield* plainClient(server)
      const listener = yield* plainClient(server)
      const heard: Array<string> = []
      listener.on("message", (_channel: string, message: string) => heard.push(message))
      yield* Effect.promise(() => listener.subscribe(`cache-aside-bus:app:${namespace}`))
      yield* Effect.promise(() => raw.set("other:cache:nbus:1:x", "v")) // outside the keyPrefix
      yield* Effect.promise(() => raw.set("app:cache:nbus:1:k", "v"))
      yield* eventually("eviction", () => seen.evicted.length >= 1)
      yield* bus.publish(namespace, { _tag: "All" }) // allowed
      yield* eventually("the message published", () => heard.length === 1)
      // several heartbeats pass without a flush: PING is allowed too
      yield* Effect.sleep("700 millis")
      assert.strictEqual(seen.flushes(), 1)
      // the restricted user's own publish reached its own subscriber once (locally, not again from Redis)
      deepStrictEqual(seen.evicted, [{ _tag: "Keys", keys: ["cache:nbus:1:k"] }, { _tag: "All" }])
    }))

  for (const [heartbeat, stall] of [["200 millis", 500], ["1 second", 300]] as const) {
    it.scopedLive(`after this process stalls (${stall} ms, heartbeat ${heartbeat}), reads do not use the near cache before the invalidations that arrived are read`, () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const context = yield* storeAndBus(server, heartbeat)
        let version = 1
        const cache = yield* CacheAside.make({
          namespace: "stall",
          key: (key: string) => key,
          schema: Schema.Number,
          lookup: () => Effect.sync(() => Option.some(version)),
          ttl: "1 minute",
          nearCache: { maxEntries: 10, ttl: "1 minute" }
        }).pipe(Effect.provide(context))
        const bus = Context.get(context, CacheBus.CacheBus)
        yield* eventually("healthy", () => bus.healthy())
        assertSome(yield* cache.get("k"), 1)
        assertSome(yield* cache.get("k"), 1) // held by the near cache
        const raw = yield* plainClient(server)
        yield* Effect.promise(() => raw.ping())
        const runtime = yield* Effect.runtime<never>()
        const [atOnce, answer] = yield* Effect.async<
          readonly [Exit.Exit<Option.Option<number>>, Exit.Exit<Option.Option<number>>]
        >((resume) => {
          version = 2
          // a get due while the process stalls: when the stall ends, Node runs due timers before it
          // reads the sockets again
          setTimeout(() => {
            // what a fiber woken by this timer would answer now (a near hit is synchronous)
            const atOnce = Runtime.runSyncExit(runtime)(cache.get("k"))
            Runtime.runCallback(runtime)(cache.get("k"), { onExit: (exit) => resume(Effect.succeed([atOnce, exit])) })
          }, 50)
          setImmediate(() => {
            void raw.del(cache.keyOf("k")) // another client's write: its invalidation arrives during the stall
            const until = Date.now() + stall
            while (Date.now() < until) {
              // a stalled process: a long GC pause, a starved CPU
            }
          })
        })
        // without the currency check the near cache answered 1 here, before the eviction was read
        assert.isFalse(
          Exit.isSuccess(atOnce) && Option.isSome(atOnce.value) && atOnce.value.value === 1,
          "a stale near hit"
        )
        assertSuccess(answer, Option.some(2))
      }))
  }

  it.scopedLive("a stall of this process while a heartbeat PING is in flight: the answer that arrived meanwhile counts, no flush", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { a, seen } = yield* subscribedInstance(server, "200 millis")
      const flushesBefore = seen.flushes()
      const raw = yield* plainClient(server)
      // Redis busy for 150 ms: the heartbeat PING sent meanwhile (one every 100 ms) is answered when
      // it ends, while this process is stalled (from 120 ms to 520 ms, well past the PING's 200 ms
      // limit): when the stall ends, Node runs the due timers before it reads the answer
      const busy = `
        local t = redis.call("TIME")
        local start = t[1] * 1000000 + t[2]
        repeat t = redis.call("TIME") until t[1] * 1000000 + t[2] - start > 150000
        return 1`
      yield* Effect.async<void>((resume) => {
        void raw.eval(busy, 0)
        setTimeout(() => {
          const until = Date.now() + 400
          while (Date.now() < until) {
            // a stalled process: a long GC pause, a starved CPU
          }
          resume(Effect.void)
        }, 120)
      })
      yield* Effect.sleep("500 millis") // several heartbeats after the stall
      assert.strictEqual(seen.flushes(), flushesBefore, "a PING answered during the stall is not a lost connection")
      assert.isTrue(a.bus.healthy())
    }))

  it.scopedLive("a message larger than any the bus sends is not read: its namespace is flushed instead", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const { seen } = yield* subscribedInstance(server)
      const raw = yield* plainClient(server)
      // well-formed, from "another instance": a 1 MB pattern would take seconds to compile and match
      // against every near-cache entry, in every process
      const bomb = JSON.stringify({
        sender: "elsewhere",
        namespace,
        invalidation: { _tag: "Pattern", pattern: `[${"a".repeat(1_000_000)}]` }
      })
      yield* Effect.promise(() => raw.publish(`cache-aside-bus:${namespace}`, bomb))
      yield* eventually("the message handled", () => seen.evicted.length >= 1)
      deepStrictEqual(seen.evicted, [{ _tag: "All" }])
    }))

  it.scopedLive("a paused server: the missed heartbeat flushes and the bus stays unhealthy until it answers", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const a = yield* instance(server, "100 millis")
      const seen = recorder()
      yield* a.bus.subscribe(namespace, seen.subscriber)
      yield* eventually("healthy", () => a.bus.healthy())
      yield* server.pause
      yield* eventually("a flush while paused", () => seen.flushes() >= 2)
      assert.isFalse(a.bus.healthy())
      yield* Effect.sleep("300 millis")
      assert.isFalse(a.bus.healthy(), "still unhealthy while the server is paused")
      yield* server.resume
      yield* eventually("healthy after the resume", () => a.bus.healthy())
    }))
})
