/**
 * A lease-read whose answer is lost, on a real redis-server: Redis is paused (SIGSTOP) while a get's
 * lease-read is in flight, so the client times it out; once resumed, Redis runs the script all the
 * same and writes the lease. The background release (a compare-and-delete, sent after it on the same
 * connection) removes it, so another process's get of the key does not wait in the lock. Counted:
 * the lease left in Redis, the other process's `lockWaits`.
 */
import { CacheAside, CacheStore, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { assertSome } from "@effect/vitest/utils"
import { Context, Effect, Layer, Option, Redacted, Schedule, Schema } from "effect"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

/** One process: its own Redis connection and metrics, and a cache (lock on, the default). */
const processOn = (server: RedisServer["Type"]) =>
  Effect.gen(function*() {
    const context: Context.Context<CacheStore.CacheStore | Metrics.Metrics> = yield* Layer.build(
      Layer.provideMerge(
        RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "200 millis" }),
        Metrics.layer
      )
    )
    let loads = 0
    const cache = yield* CacheAside.make({
      namespace: "ambiguous",
      key: (id: number) => String(id),
      schema: Schema.String,
      lookup: (id: number) => Effect.sync(() => (loads++, Option.some(`v${id}`))),
      ttl: "1 minute"
    }).pipe(Effect.provide(context))
    const stats = Effect.flatMap(Metrics.Metrics, (m) => m.snapshot("ambiguous")).pipe(Effect.provide(context))
    return { cache, stats, loads: () => loads, store: Context.get(context, CacheStore.CacheStore) }
  })

describe("a lease-read whose answer was lost (Redis)", () => {
  it.scopedLive("its lease is released: another process's get does not wait in the lock", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const raw = yield* plainClient(server)
      const here = yield* processOn(server)
      assertSome(yield* here.cache.get(0), "v0") // connected, the lease-read's script loaded
      // the release's script too: a release sent as EVALSHA to a server that does not know it yet
      // and timed out is never run (the NOSCRIPT fallback to EVAL is the timed-out promise's)
      yield* here.store.compareAndDelete("warm-up", new Uint8Array([1]))
      yield* server.pause
      assertSome(yield* here.cache.get(1), "v1") // the lease-read times out: served by the lookup
      // the release was sent in the background, and timed out too, while Redis was paused
      yield* Effect.flatMap(here.stats, (s) => s.store.timeouts >= 2 ? Effect.void : Effect.fail("no release yet"))
        .pipe(
          Effect.retry(Schedule.intersect(Schedule.spaced("10 millis"), Schedule.recurs(500))),
          Effect.ignore // (no release: the count below says so)
        )
      yield* server.resume
      yield* here.store.get("sync") // on the same connection: Redis has run what was sent before it
      const full = here.cache.keyOf(1)
      assert.strictEqual(yield* Effect.promise(() => raw.exists(full)), 0, "the lease is still in Redis")
      const there = yield* processOn(server)
      assertSome(yield* there.cache.get(1), "v1")
      assert.strictEqual((yield* there.stats).lockWaits, 0)
      assert.strictEqual(there.loads(), 1)
    }), { timeout: 60_000 })
})
