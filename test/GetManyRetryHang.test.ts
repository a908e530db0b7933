/**
 * Regression (found by test/InterruptProperty.test.ts): a `getMany` that joined a flight whose
 * leader is interrupted in its read gets the key again (`Retry`) inside its uninterruptible mask
 * (batch.ts: `outcome === Retry ? impl.retry(key, flight) : outcome`, no `restore`). With a lookup
 * that never answers, the getMany can no longer be interrupted: `Fiber.interrupt` waits forever,
 * and the key's new flight keeps that waiter (and its load) forever.
 *
 * Deterministic: the leader's lease-read runs on the real Redis, then its answer is held; the
 * getMany joins its flight; the leader is interrupted; the getMany is interrupted.
 */
import { CacheAside, CacheStore, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Option, Redacted, Schema } from "effect"
import { RedisServer } from "./utils/RedisServer.js"

/** The store, with the first `getOrLease` answer held after Redis has answered it (`held` told). */
const firstReadHeld = (held: Deferred.Deferred<void>) =>
  Layer.effect(
    CacheStore.CacheStore,
    Effect.map(CacheStore.CacheStore, (store): CacheStore.CacheStore["Type"] => {
      let reads = 0
      return {
        ...store,
        getOrLease: (key, lease, ttl) =>
          ++reads === 1
            ? Effect.zipLeft(
              store.getOrLease(key, lease, ttl),
              Effect.zipRight(Deferred.succeed(held, undefined), Effect.never)
            )
            : store.getOrLease(key, lease, ttl)
      }
    })
  )

describe("a getMany joined to a get interrupted in its read", () => {
  it.scopedLive("can still be interrupted while the key loads again", () =>
    Effect.gen(function*() {
      const server = yield* RedisServer.make
      const held = yield* Deferred.make<void>()
      const context = yield* Layer.build(
        Layer.provideMerge(
          firstReadHeld(held),
          RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" })
        ).pipe(Layer.provideMerge(Metrics.layer))
      )
      const cache = yield* CacheAside.make({
        namespace: "retry",
        key: (k: number) => String(k),
        schema: Schema.Number,
        lookup: (_: number) => Effect.never, // never answers (interruptible)
        ttl: "1 minute"
      }).pipe(Effect.provide(context))
      const leader = yield* Effect.fork(cache.get(1))
      yield* Deferred.await(held) // the leader is in its read
      const many = yield* Effect.fork(cache.getMany([1]))
      // the getMany has joined the leader's flight: wait until it is suspended on it
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      yield* Fiber.interrupt(leader) // its flight ends with Retry: the getMany gets again
      for (let i = 0; i < 100; i++) yield* Effect.yieldNow()
      const interrupted = yield* Effect.timeoutOption(Fiber.interrupt(many), "5 seconds")
      assert.isTrue(Option.isSome(interrupted), "the interrupt of the getMany did not end in 5 s")
    }), 30_000)
})
