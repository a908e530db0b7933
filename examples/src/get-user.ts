/**
 * The classic "get a user with cache-aside", end to end.
 *
 *   pnpm demo                         # embedded defaults: the in-memory store, no Redis needed
 *   REDIS_URL=redis://127.0.0.1:6379 pnpm demo   # the same program on a real Redis
 */
import { CacheService, CacheStore, DataSource, MemoryCacheStore, Metrics } from "@cache-aside/core"
import { RedisCacheBus } from "@cache-aside/redis"
import { Config, type ConfigError, Console, Context, Effect, Layer, Option, Schema } from "effect"

class User extends Schema.Class<User>("User")({
  id: Schema.Number,
  name: Schema.String,
  email: Schema.String,
  updatedAt: Schema.Date
}) {}

const timed = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const start = performance.now()
    const value = yield* effect
    return [value, `${(performance.now() - start).toFixed(1)} ms`] as const
  })

const show = (user: Option.Option<User>) =>
  Option.match(user, { onNone: () => "not found", onSome: (u) => `${u.name} <${u.email}>` })

/** The "database": 20 ms per query, and it counts its queries. */
class Database extends Context.Tag("demo/Database")<Database, DataSource.Memory<number, User>>() {
  static readonly layer = Layer.effect(
    Database,
    DataSource.memory<number, User>(
      [
        [42, new User({ id: 42, name: "Ada Lovelace", email: "ada@example.com", updatedAt: new Date() })],
        [7, new User({ id: 7, name: "Alan Turing", email: "alan@example.com", updatedAt: new Date() })]
      ],
      { latency: "20 millis" }
    )
  )
}

/**
 * The cache, defined once as a service: its layer builds it once (never per request, which would
 * lose coalescing), and its background work lives as long as the layer.
 */
class UserCache extends CacheService.Tag("demo/UserCache")<UserCache>()(
  Effect.map(Database, (db) => ({
    namespace: "demo-user",
    key: (id: number) => String(id),
    schema: User,
    lookup: db,
    ttl: "1 hour",
    negativeTtl: "30 seconds",
    // an L1 of decoded values in process memory; on Redis kept coherent by RedisCacheBus (below)
    nearCache: { maxEntries: 10_000, ttl: "1 minute" }
  }))
) {}

const program = Effect.gen(function*() {
  const db = yield* Database
  const users = yield* UserCache
  yield* users.invalidateAll // start cold, also on a shared Redis

  const [cold, coldTime] = yield* timed(users.get(42))
  yield* Console.log(`1. cold read   get(42) -> ${show(cold)}  (miss, loaded from the database, ${coldTime})`)
  for (let i = 0; i < 3; i++) {
    const [warm, warmTime] = yield* timed(users.get(42))
    yield* Console.log(`2. warm read   get(42) -> ${show(warm)}  (hit, ${warmTime})`)
  }

  yield* db.write(42, new User({ id: 42, name: "Ada King", email: "ada@example.org", updatedAt: new Date() }))
  yield* users.invalidate(42)
  const [updated, updatedTime] = yield* timed(users.get(42))
  yield* Console.log(`3. update      write + invalidate(42); get(42) -> ${show(updated)}  (reloaded, ${updatedTime})`)

  const before = yield* db.loads
  const [burst, burstTime] = yield* timed(
    Effect.forEach(Array.from({ length: 1000 }, () => 7), (id) => users.get(id), { concurrency: "unbounded" })
  )
  const burstLoads = (yield* db.loads) - before
  yield* Console.log(
    `4. stampede    1,000 concurrent get(7) on a cold key -> ${burst.length} answers, ` +
      `${burstLoads} database query (${burstTime})`
  )

  const beforeMissing = yield* db.loads
  const [missing] = yield* timed(users.get(404))
  const [missingAgain, missingTime] = yield* timed(users.get(404))
  yield* Console.log(
    `5. not found   get(404) twice -> ${show(missing)}, ${show(missingAgain)}  ` +
      `(${(yield* db.loads) - beforeMissing} database query; the second answer came from the cache in ${missingTime})`
  )

  const metrics = yield* Metrics.Metrics
  const s = yield* metrics.snapshot("demo-user")
  yield* Console.log(
    `\nmetrics: hits=${s.hits} misses=${s.misses} loads=${s.loads} coalesced=${s.coalesced} ` +
      `cacheErrors=${s.cacheErrors} fallbacks=${s.fallbacks} hitRatio=${(s.hitRatio * 100).toFixed(1)}%`
  )
  yield* Console.log(`database queries in all: ${yield* db.loads}`)
})

// Embedded default: the memory store. With REDIS_URL set: Redis.
const StoreLive = Layer.unwrapEffect(
  Effect.map(
    Config.option(Config.string("REDIS_URL")),
    (
      url
    ): Layer.Layer<
      CacheStore.CacheStore,
      ConfigError.ConfigError | CacheStore.InvalidStoreOptions,
      Metrics.Metrics
    > =>
      Option.isSome(url)
        // the store and the bus that keeps every process's near cache coherent, on one client
        ? Layer.tap(RedisCacheBus.layerConfig, () =>
          Console.log("store: Redis from REDIS_URL (near cache on; the URL is not printed: it may hold a password)\n"))
        : Layer.tap(MemoryCacheStore.layer(), () =>
          Console.log("store: in-memory (set REDIS_URL to use Redis)\n"))
  )
)

program.pipe(
  Effect.provide(UserCache.layer.pipe(Layer.provideMerge(Database.layer))),
  Effect.provide(Layer.provideMerge(StoreLive, Metrics.layer)),
  Effect.runPromise
).catch((error) => {
  console.error(error)
  process.exit(1)
})
