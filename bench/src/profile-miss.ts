/**
 * Sequential misses (fresh keys), or hits of one key, through CacheAside, inside the Effect program
 * that made the cache: `node --import tsx src/profile-miss.ts [memory|redis|bare] [gets] [miss|hit]`.
 */
import { CacheAside, MemoryCacheStore, Metrics } from "@cache-aside/core"
import { RedisCacheStore } from "@cache-aside/redis"
import * as RedisClient from "@cache-aside/redis/RedisClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import { rowOf } from "./peers/workloads.js"
import { startRedis } from "./redis-server.js"

const [kind = "redis", getsText = "5000", what = "miss"] = process.argv.slice(2)
/** `hit`: every get reads one key filled before the rounds; `miss` (default): every get a fresh key. */
const keyOf = (round: number, i: number) => what === "hit" ? "hot" : `k${round}:${i}`
const gets = Number(getsText)
const Row = Schema.Struct({ id: Schema.String, name: Schema.String, email: Schema.String, score: Schema.Number })
const server = kind === "memory" ? undefined : await startRedis()

const program = Effect.gen(function*() {
  const cache = yield* CacheAside.make({
    namespace: "profile",
    key: (key: string) => key,
    schema: Row,
    lookup: (key: string) => Effect.sync(() => Option.some(rowOf(key))),
    ttl: "1 hour"
  })
  if (what === "hit") yield* cache.get("hot")
  for (let round = 0; round < 4; round++) {
    const cpu = process.cpuUsage()
    const start = performance.now()
    let i = 0
    const loop = Effect.whileLoop({ while: () => i < gets, body: () => cache.get(keyOf(round, i++)), step: () => {} })
    if (process.env["OTHER_RUNTIME"]) yield* Effect.promise(() => Effect.runPromise(loop))
    else yield* loop
    const used = process.cpuUsage(cpu)
    const wall = (performance.now() - start) * 1000 / gets
    console.log(
      `${kind} ${what}: ${((used.user + used.system) / gets).toFixed(1)} µs CPU (user ${
        (used.user / gets).toFixed(1)
      }), ${wall.toFixed(1)} µs wall per get`
    )
  }
})

const url = server === undefined ? undefined : Redacted.make(server.url)
const store = kind === "memory"
  ? MemoryCacheStore.layer()
  : kind === "bare"
  ? RedisCacheStore.layerWithClient.pipe(Layer.provide(RedisClient.layer({ url: url! })))
  : RedisCacheStore.layer({ url: url! }).pipe(Layer.provide(Metrics.layer))
await Effect.runPromise(Effect.scoped(program).pipe(Effect.provide(Layer.merge(store, Metrics.layer))))
await server?.stop()
