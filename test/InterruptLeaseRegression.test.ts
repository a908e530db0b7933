/**
 * Regression (found by test/InterruptProperty.test.ts): a get whose lease-read is interrupted after
 * its cache's scope has closed leaves the lease its read wrote in Redis until `leaseTtl`; every get
 * of the key in every process then waits out the lock.
 *
 * Deterministic: the store's `getOrLease` runs on the real Redis (the lease is written), then its
 * answer is held, as a slow reply is; the cache's scope closes; the get is interrupted.
 */
import { CacheAside, CacheStore, Codec, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Redacted, Schema, Scope } from "effect"
import { plainClient } from "./utils/PlainClient.js"
import { RedisServer } from "./utils/RedisServer.js"

/** The store, with every `getOrLease` answer held after Redis has answered it (`written` told). */
const heldReads = (written: Deferred.Deferred<void>) =>
  Layer.effect(
    CacheStore.CacheStore,
    Effect.map(CacheStore.CacheStore, (store): CacheStore.CacheStore["Type"] => ({
      ...store,
      getOrLease: (key, lease, ttl) =>
        Effect.zipLeft(
          store.getOrLease(key, lease, ttl),
          Effect.zipRight(Deferred.succeed(written, undefined), Effect.never)
        )
    }))
  )

describe("a lease-read interrupted after its cache closed", () => {
  it.scopedLive(
    "releases the lease it wrote: a later get of the key in another process does not wait",
    () =>
      Effect.gen(function*() {
        const server = yield* RedisServer.make
        const plain = yield* plainClient(server)
        const redisLayer = () =>
          RedisCacheStore.layer({ url: Redacted.make(server.url), commandTimeout: "2 seconds" }).pipe(
            Layer.provideMerge(Metrics.layer)
          )
        const written = yield* Deferred.make<void>()
        const held = yield* Layer.build(Layer.provideMerge(heldReads(written), redisLayer()))
        const other = yield* Layer.build(redisLayer())
        const options = {
          namespace: "regress",
          key: (k: number) => String(k),
          schema: Schema.Number,
          lookup: (k: number) => Effect.succeed(Option.some(k)),
          ttl: "1 minute",
          leaseTtl: "60 seconds",
          lock: { wait: "200 millis", poll: "5 millis" }
        } as const
        const scope = yield* Scope.make()
        const cache = yield* CacheAside.make(options).pipe(Effect.provide(held), Scope.extend(scope))
        const get = yield* Effect.fork(cache.get(1))
        yield* Deferred.await(written) // the lease is in Redis; the read's answer is held
        assert.isTrue(Codec.isLease((yield* Effect.promise(() => plain.getBuffer(cache.keyOf(1))))!))
        yield* Scope.close(scope, Exit.void)
        yield* Fiber.interrupt(get)
        // the release runs in the background: wait for it (a generous bound against a hang)
        let bytes = yield* Effect.promise(() => plain.getBuffer(cache.keyOf(1)))
        for (let i = 0; i < 500 && bytes !== null && Codec.isLease(bytes); i++) {
          yield* Effect.sleep("10 millis")
          bytes = yield* Effect.promise(() => plain.getBuffer(cache.keyOf(1)))
        }
        assert.isFalse(bytes !== null && Codec.isLease(bytes), "the lease of the interrupted read is still in Redis")
        // another process's get answers without waiting for the lock
        const fresh = yield* CacheAside.make(options).pipe(Effect.provide(other))
        assert.strictEqual(Option.getOrUndefined(yield* fresh.get(1)), 1)
        const snapshot = yield* Effect.flatMap(Metrics.Metrics, (m) => m.snapshot("regress")).pipe(
          Effect.provide(other)
        )
        assert.strictEqual(snapshot.lockWaits, 0, "a get waited for the lock of a lease nobody holds")
      }),
    30_000
  )
})
