/**
 * One store operation in a loop, inside one Effect program: raw ioredis (`Effect.promise`), the bare
 * Redis store, the store `layer` builds (with the resilient wrapper). Client CPU per operation.
 * `node --import tsx src/profile-store.ts [ops]`
 */
import { CacheStore, Codec, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import * as RedisClient from "@cache-aside/redis/RedisClient"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import { Redis } from "ioredis"
import { randomUUID } from "node:crypto"
import { startRedis } from "./redis-server.js"

const ops = Number(process.argv[2] ?? "20000")
const server = await startRedis()
const raw = new Redis(server.url)
await raw.set("k", "x".repeat(85))
const bytes = new TextEncoder().encode("y".repeat(85))
const ttl = Duration.hours(1)

const measure = (label: string, op: Effect.Effect<unknown, unknown>) =>
  Effect.gen(function*() {
    for (let round = 0; round < 3; round++) {
      const cpu = process.cpuUsage()
      let i = 0
      yield* Effect.whileLoop({ while: () => i++ < ops, body: () => op, step: () => {} })
      const used = process.cpuUsage(cpu)
      if (round === 2) console.log(`${label}: ${((used.user + used.system) / ops).toFixed(1)} µs CPU per op`)
    }
  })

const suite = (label: string) =>
  Effect.gen(function*() {
    const store = yield* CacheStore.CacheStore
    yield* measure(`${label} get`, store.get("k"))
    yield* measure(`${label} getOrLease hit`, store.getOrLease("k", bytes, ttl))
    yield* measure(
      `${label} getOrLease hit, a new lease each`,
      Effect.suspend(() => store.getOrLease("k", Codec.lease(randomUUID()), ttl))
    )
    let fresh = 0
    yield* measure(
      `${label} getOrLease miss`,
      Effect.suspend(() => store.getOrLease(`${label}:miss:${fresh++}`, bytes, ttl))
    )
    yield* measure(`${label} setIfAbsent`, store.setIfAbsent("k", bytes, ttl))
    yield* measure(`${label} compareAndSet`, store.compareAndSet("k2", bytes, bytes, ttl))
  })

await Effect.runPromise(Effect.gen(function*() {
  yield* measure("raw get", Effect.promise(() => raw.get("k")))
  yield* measure("raw set nx", Effect.promise(() => raw.set("k", "v", "PX", 1000, "NX")))
}))
const url = Redacted.make(server.url)
await Effect.runPromise(
  suite("bare").pipe(
    Effect.provide(RedisCacheStore.layerWithClient.pipe(Layer.provide(RedisClient.layer({ url }))))
  )
)
await Effect.runPromise(
  suite("layer").pipe(Effect.provide(RedisCacheStore.layer({ url }).pipe(Layer.provide(Metrics.layer))))
)
await raw.quit()
await server.stop()
